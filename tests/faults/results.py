"""Where the fault scenarios and the bad-input tests write their figures.

``bench/results/reliability.json`` holds one row per fault scenario (merged by
scenario name, so running one test updates its row only) and one row per
category of bad input; ``bench/reliability_table.py`` renders it as the
README's Reliability table.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "reliability.json"


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _merge(section: str, name: str, row: dict[str, Any], path: Path) -> None:
    with _locked(path):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data.setdefault(section, {})[name] = {**row, "recorded_at": int(time.time())}
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)


def record_scenario(row: dict[str, Any], path: Path = RESULTS) -> None:
    """Record one fault scenario's row (``row["scenario"]`` is its name)."""
    _merge("scenarios", row["scenario"], row, path)


def record_bad_input(
    category: str, tried: int, refused: int, path: Path = RESULTS, **extra
) -> None:
    """Record how many bad inputs of one category were tried and how many were refused."""
    _merge(
        "bad_input",
        category,
        {"category": category, "tried": tried, "refused": refused, **extra},
        path,
    )


def record_security(check: str, status: str, detail: str = "", path: Path = RESULTS) -> None:
    """Record one security check: ``status`` is "pass" or "gap" (a known, xfailed weakness).

    A test records "gap" before the assertion that fails today and "pass" once past it.
    """
    _merge("security", check, {"check": check, "status": status, "detail": detail}, path)


def record_reliability_check(
    check: str, status: str, detail: str = "", path: Path = RESULTS
) -> None:
    """Record a reliability property checked outside the scenarios ("pass" or "gap")."""
    _merge("reliability_checks", check, {"check": check, "status": status, "detail": detail}, path)
