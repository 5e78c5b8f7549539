"""Test aggregate algo: the average of every numeric parameter the input models share."""

import linear
import substratools as tools


class AverageAggregateAlgo(tools.algo.AggregateAlgo):
    def aggregate(self, models, rank):
        if not models:
            raise ValueError("nothing to aggregate")
        model = linear.average(models)
        print(f"rank {rank}: aggregated {len(models)} models: {model}")
        return model

    def load_model(self, path):
        return linear.load(path)

    def save_model(self, model, path):
        linear.save(model, path)


if __name__ == "__main__":
    tools.algo.execute(AverageAggregateAlgo())
