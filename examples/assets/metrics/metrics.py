"""Metrics of the example objective: NEGATIVE mean squared error (higher is better)."""

import substratools as tools


class NegativeMSE(tools.Metrics):
    def score(self, y_true, y_pred):
        if len(y_true) != len(y_pred):
            raise ValueError(f"{len(y_pred)} predictions for {len(y_true)} labels")
        if not y_true:
            raise ValueError("no labels to score")
        return -sum((t - p) ** 2 for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


if __name__ == "__main__":
    tools.metrics.execute(NegativeMSE())
