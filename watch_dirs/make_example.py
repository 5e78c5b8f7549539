"""Write the example channel of watch_dirs/: a tiny substratools dataset and five samples.

    python watch_dirs/make_example.py            # (re)writes watch_dirs/example/
    python watch_dirs/make_example.py --samples 20 --root /tmp/watch

The channel registers its own dataset (``opener.py`` + ``description.md``,
named in ``channel.json``); each ``sample_<i>/data.csv`` holds rows ``x,y`` on
the line y = 2x + 1 with a little noise. The content depends only on the
sample number, so running it again changes nothing (and registers nothing new).
The dataset's two files are the ones committed in ``watch_dirs/example/``:
they are copied, never written from a second copy kept here.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The dataset's files are committed in example/ and copied from there: one source.
TEMPLATE = HERE / "example"
DATASET_FILES = ("opener.py", "description.md")

CHANNEL = {
    "dataset": {
        "name": "watch-dirs example",
        "type": "csv",
        "data_opener": "opener.py",
        "description": "description.md",
        "permissions": {"public": True, "authorized_ids": []},
        "metadata": {"source": "watch_dirs/make_example.py"},
    },
    "test_only": False,
    "mode": "upload",
}


def sample_csv(i: int, rows: int = 5) -> str:
    rng = random.Random(f"example-sample-{i}")
    lines = [f"# example sample {i}"]
    for _ in range(rows):
        x = rng.uniform(-5.0, 5.0)
        lines.append(f"{x:.4f},{2.0 * x + 1.0 + rng.gauss(0.0, 0.05):.6f}")
    return "\n".join(lines) + "\n"


def write_if_changed(path: Path, text: str) -> None:
    """Leave identical files alone: their mtimes stay, so the watcher sees no change."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def make_example(root: Path, samples: int = 5) -> Path:
    channel = root / "example"
    for name in DATASET_FILES:
        source = TEMPLATE / name
        if not source.is_file():
            raise SystemExit(f"{source} is missing: restore it from git (it is the source)")
        write_if_changed(channel / name, source.read_text(encoding="utf-8"))
    write_if_changed(channel / "channel.json", json.dumps(CHANNEL, indent=2) + "\n")
    for i in range(samples):
        write_if_changed(channel / f"sample_{i}" / "data.csv", sample_csv(i))
    return channel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE, help="watch root [default: here]")
    parser.add_argument("--samples", type=int, default=5, help="sample folders [default: 5]")
    args = parser.parse_args()
    print(make_example(args.root, args.samples))


if __name__ == "__main__":
    main()
