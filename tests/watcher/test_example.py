"""watch_dirs/make_example.py writes the committed example channel, from its committed files."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from substra_worker.watcher.channel import load_channel

WATCH_DIRS = Path(__file__).resolve().parents[2] / "watch_dirs"
SCRIPT = WATCH_DIRS / "make_example.py"


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_the_generated_example_is_the_committed_one(tmp_path):
    subprocess.run([sys.executable, str(SCRIPT), "--root", str(tmp_path)], check=True)
    made, committed = tmp_path / "example", WATCH_DIRS / "example"
    assert _files(made) == _files(committed)
    _, mismatch, errors = filecmp.cmpfiles(made, committed, _files(committed), shallow=False)
    assert mismatch == [] and errors == []
    channel = load_channel(made, default_batch_size=50)
    assert channel.registers_dataset and channel.dataset["name"] == "watch-dirs example"
    assert channel.dataset_key == load_channel(committed, default_batch_size=50).dataset_key


def test_the_script_holds_no_copy_of_the_dataset_files():
    text = SCRIPT.read_text(encoding="utf-8")
    for name in ("opener.py", "description.md"):
        body = (WATCH_DIRS / "example" / name).read_text(encoding="utf-8")
        lines = [line for line in body.splitlines() if len(line.strip()) > 20]
        assert not any(line in text for line in lines), f"make_example.py repeats {name}"
