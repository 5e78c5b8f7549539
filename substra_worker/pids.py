"""Whether a process id still runs: spool folders and files are named after their owner's pid."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """True while ``pid`` runs (or belongs to another user, whose files are not ours to judge).

    A killed process stays a zombie until its parent (often init, after a
    crash) reaps it; it runs no more, so it counts as dead.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) not in ("Z", "X")


def _state(pid: int) -> str | None:
    """The state letter of ``/proc/<pid>/stat`` (Linux), or None where there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")"
    fields = stat.rpartition(")")[2].split()
    return fields[0] if fields else None


def owner(name: str) -> int | None:
    """The pid a ``<pid>-...`` spool name starts with, or None."""
    pid = name.partition("-")[0]
    return int(pid) if pid.isdigit() else None
