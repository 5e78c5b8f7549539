"""Test algo that sleeps before training like algo.py, for cancel and timeout tests.

The duration (seconds) comes from the SLEEPING_ALGO_SECONDS environment variable, else
from sleep_seconds.txt next to this script. Before sleeping it starts a child process
that sleeps as long, and writes "<own pid> <child pid>" to sleeping_algo.pids in the
working directory, so tests can check that a kill reaches the whole process group.
"""

import os
import subprocess
import sys
import time

import linear
import substratools as tools

PIDS_FILE = "sleeping_algo.pids"


def _seconds():
    value = os.environ.get("SLEEPING_ALGO_SECONDS")
    if value is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sleep_seconds.txt")
        with open(path, encoding="utf-8") as f:
            value = f.read()
    return float(value.strip())


class SleepingAlgo(tools.algo.Algo):
    def train(self, X, y, models, rank):
        seconds = _seconds()
        child = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({seconds!r})"],
            stdin=subprocess.DEVNULL,
        )
        with open(PIDS_FILE + ".tmp", "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {child.pid}\n")
        os.replace(PIDS_FILE + ".tmp", PIDS_FILE)  # readers never see a partial file
        print(f"sleeping {seconds:g}s (child {child.pid})", flush=True)
        time.sleep(seconds)
        child.wait()
        return linear.train_linear(X, y, models)

    def predict(self, X, model):
        return [model["a"] * x + model["b"] for x in X]

    def load_model(self, path):
        return linear.load(path)

    def save_model(self, model, path):
        linear.save(model, path)


if __name__ == "__main__":
    tools.algo.execute(SleepingAlgo())
