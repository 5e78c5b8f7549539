"""Benchmark opener: every data-sample folder holds ``data.csv`` rows ``x,y``."""

import json
import os

import substratools as tools


def _rows(folders):
    rows = []
    for folder in sorted(folders):
        path = os.path.join(folder, "data.csv")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    x, y = line.split(",")[:2]
                    rows.append((float(x), float(y)))
    return rows


class CsvOpener(tools.Opener):
    def get_X(self, folders):
        return [x for x, _ in _rows(folders)]

    def get_y(self, folders):
        return [y for _, y in _rows(folders)]

    def fake_X(self, n_samples=None):
        return [float(i) for i in range(n_samples or 10)]

    def fake_y(self, n_samples=None):
        return [2.0 * x for x in self.fake_X(n_samples)]

    def get_predictions(self, path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def save_predictions(self, y_pred, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump([float(v) for v in y_pred], f)
