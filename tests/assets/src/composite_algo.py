"""Test composite algo: the trunk holds the slope {"a"}, the head the intercept {"b"}.

Training fits the slope (averaged with the input trunk's when given), then the intercept
for that slope (averaged with the input head's when given).
"""

import linear
import substratools as tools


class LinearCompositeAlgo(tools.algo.CompositeAlgo):
    def train(self, X, y, head_model, trunk_model, rank):
        a, _ = linear.fit(X, y)
        if trunk_model and "a" in trunk_model:
            a = (a + trunk_model["a"]) / 2
        b = linear.mean(v - a * x for x, v in zip(X, y, strict=True))
        if head_model and "b" in head_model:
            b = (b + head_model["b"]) / 2
        print(f"rank {rank}: head b={b} trunk a={a}")
        return {"b": b}, {"a": a}

    def predict(self, X, head_model, trunk_model):
        return [trunk_model["a"] * x + head_model["b"] for x in X]

    def load_head_model(self, path):
        return linear.load(path)

    def save_head_model(self, model, path):
        linear.save(model, path)

    def load_trunk_model(self, path):
        return linear.load(path)

    def save_trunk_model(self, model, path):
        linear.save(model, path)


if __name__ == "__main__":
    tools.algo.execute(LinearCompositeAlgo())
