"""Test algo: least-squares linear model y = a*x + b, models saved as JSON {"a", "b"}.

Training fits the local data; with input models, the result is the mean of that fit and
of the input models' average.
"""

import linear
import substratools as tools


class LinearAlgo(tools.algo.Algo):
    def train(self, X, y, models, rank):
        model = linear.train_linear(X, y, models)
        print(f"rank {rank}: trained on {len(X)} points from {len(models)} models: {model}")
        return model

    def predict(self, X, model):
        return [model["a"] * x + model["b"] for x in X]

    def load_model(self, path):
        return linear.load(path)

    def save_model(self, model, path):
        linear.save(model, path)


if __name__ == "__main__":
    tools.algo.execute(LinearAlgo())
