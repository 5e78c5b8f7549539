"""Small measuring helpers: waiting, percentiles, rates and process memory (Linux ``/proc``)."""

from __future__ import annotations

import math
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

MIB = 1024 * 1024
MB = 1000 * 1000  # memory is reported in MB (10^6 bytes), as the targets are written


class BenchError(RuntimeError):
    """Raised when a benchmark cannot complete (a stuck queue, a failed job, a dead process)."""


def wait_until(
    condition: Callable[[], T], timeout: float, *, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``condition`` until it returns a true value; ``BenchError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what or condition}")
        time.sleep(interval)


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, nearest rank: a value that was measured."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(runs: list[dict], key: str) -> dict:
    """The median of every numeric field over repeated runs, and each run's ``key``.

    Repeating a measurement and keeping the median takes out most of the noise
    of a machine shared with other work; every run's value stays in ``runs``.
    """
    out: dict = {}
    for field in runs[0]:
        values = [r[field] for r in runs]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            out[field] = round(statistics.median(values), 3)
        else:
            out[field] = values[0]
    out["runs"] = [r[key] for r in runs]
    return out


def rate(count: int, seconds: float) -> float:
    """Items per second, 0 for an instant (never a division by zero)."""
    return count / seconds if seconds > 0 else 0.0


def ratio(value: float, baseline: float) -> float | None:
    """``value / baseline`` rounded to 3 digits, None when the baseline is 0."""
    return round(value / baseline, 3) if baseline else None


def proc_status_kib(pid: int, field: str) -> int:
    """A memory field of ``/proc/<pid>/status`` in KiB: ``VmHWM`` (peak RSS) or ``VmRSS``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"{field} not found in /proc/{pid}/status")


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a running process, MB (``VmHWM``)."""
    return round(proc_status_kib(pid, "VmHWM") * 1024 / MB, 1)


def rss_mb(pid: int) -> float:
    """Current resident set size of a running process, MB (``VmRSS``)."""
    return round(proc_status_kib(pid, "VmRSS") * 1024 / MB, 1)


def own_peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB.

    Read from ``VmHWM``: ``ru_maxrss`` would also count the parent's memory that
    a freshly spawned process shared before its ``exec``.
    """
    try:
        return peak_rss_mb(os.getpid())
    except (OSError, BenchError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / MB if sys.platform == "darwin" else peak * 1024 / MB, 1)
