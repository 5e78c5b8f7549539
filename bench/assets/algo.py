"""Benchmark algo: the trivial substratools 0.6.1 algo of the compute benchmark.

The model is the running mean of the labels, JSON ``{"mean", "count"}``; training
folds the input models in. Cheap on purpose: the benchmark measures what the
node adds around a step, not the step.
"""

import json

import substratools as tools


class MeanAlgo(tools.algo.Algo):
    def train(self, X, y, models, rank):
        count = len(y) + sum(m["count"] for m in models)
        total = sum(y) + sum(m["mean"] * m["count"] for m in models)
        return {"mean": total / count if count else 0.0, "count": count}

    def predict(self, X, model):
        return [model["mean"] for _ in X]

    def load_model(self, path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def save_model(self, model, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(model, f, sort_keys=True)


if __name__ == "__main__":
    tools.algo.execute(MeanAlgo())
