"""Example algo: least-squares line ``y = a*x + b``; models are JSON ``{"a", "b"}``.

With an input model (the previous round of a compute plan), the new model is the
mean of the local fit and of the input, so each round refines the last.
"""

import json

import substratools as tools


def fit(X, y):
    n = len(X)
    if n == 0:
        raise ValueError("no training data")
    mean_x, mean_y = sum(X) / n, sum(y) / n
    var = sum((x - mean_x) ** 2 for x in X)
    a = (
        0.0
        if var == 0
        else sum((x - mean_x) * (v - mean_y) for x, v in zip(X, y, strict=True)) / var
    )
    return a, mean_y - a * mean_x


class LinearAlgo(tools.algo.Algo):
    def train(self, X, y, models, rank):
        a, b = fit(X, y)
        if models:
            a = (a + sum(m["a"] for m in models) / len(models)) / 2
            b = (b + sum(m["b"] for m in models) / len(models)) / 2
        print(f"rank {rank}: {len(X)} points, {len(models)} input model(s): a={a:.3f} b={b:.3f}")
        return {"a": a, "b": b}

    def predict(self, X, model):
        return [model["a"] * x + model["b"] for x in X]

    def load_model(self, path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def save_model(self, model, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(model, f, sort_keys=True)


if __name__ == "__main__":
    tools.algo.execute(LinearAlgo())
