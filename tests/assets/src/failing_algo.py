"""Test algo whose training always fails, with a recognisable message."""

import json

import substratools as tools

FAILURE_MESSAGE = "failing_algo: deliberate failure in train"


class FailingAlgo(tools.algo.Algo):
    def train(self, X, y, models, rank):
        raise RuntimeError(FAILURE_MESSAGE)

    def predict(self, X, model):
        raise RuntimeError("failing_algo: deliberate failure in predict")

    def load_model(self, path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def save_model(self, model, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(model, f)


if __name__ == "__main__":
    tools.algo.execute(FailingAlgo())
