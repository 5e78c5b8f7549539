"""Upload zips of dead processes are found and removed; those of live ones are kept."""

from __future__ import annotations

import os
import subprocess
import sys

from substra_worker import pids
from substra_worker.sdk import archive


def zombie() -> subprocess.Popen:
    """A child that has exited and is not reaped yet."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, still unreaped
    return child


def test_a_zombie_is_dead_and_we_are_alive():
    child = zombie()
    try:
        assert not pids.alive(child.pid)
    finally:
        child.wait()
    assert not pids.alive(child.pid)
    assert pids.alive(os.getpid())


def test_orphan_zips_are_removed_and_live_ones_kept(tmp_path):
    folder = tmp_path / "sample"
    folder.mkdir()
    (folder / "x.csv").write_text("1,2\n")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    spool = archive.spool(tmp_path)
    orphan = spool / f"{child.pid}-sample-abc.zip"
    orphan.write_bytes(b"PK")
    unrelated = spool / "notes.zip"
    unrelated.write_bytes(b"PK")
    with archive.zipped_folder(folder, dir=tmp_path) as ours:
        assert ours.parent == spool
        assert archive.remove_orphans(tmp_path) == 1
        assert ours.exists()
    assert not orphan.exists()
    assert unrelated.exists()
    assert not ours.exists()
