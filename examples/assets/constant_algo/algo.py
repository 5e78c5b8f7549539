"""Example baseline algo: always predicts the mean of the training ``y`` (JSON ``{"mean"}``)."""

import json

import substratools as tools


class ConstantAlgo(tools.algo.Algo):
    def train(self, X, y, models, rank):
        if not y:
            raise ValueError("no training data")
        return {"mean": sum(y) / len(y)}

    def predict(self, X, model):
        return [model["mean"] for _ in X]

    def load_model(self, path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def save_model(self, model, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(model, f)


if __name__ == "__main__":
    tools.algo.execute(ConstantAlgo())
