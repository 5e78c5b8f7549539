"""Job latencies and retries as monotonic counters, folded from the status store's history.

Prometheus histograms and counters must only grow, while job records expire
(finished jobs after ``result_ttl``) or are purged. So at each scrape the jobs
that finished since the last fold are read once, from the status store's
state indexes and each job's history, and added to running totals kept in
Redis next to the jobs (``sw:api:latency``); the totals survive the records
and are shared by every API process. A lock makes one process fold at a time.

For each run of a job that ends ``succeeded`` or ``failed``:

- queue wait: from the job entering ``queued`` to its first ``running``;
- run time: from that ``running`` to the final state (retries included);
- attempts of that run by outcome, and its automatic retries.

Jobs finished within the last ``grace`` seconds are left for the next fold,
so a transition written late (by a slow writer) is not skipped.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from substra_worker.jobs import JobState
from substra_worker.status_store import StatusStore

BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
KINDS = ("queue_wait", "run")
GRACE = 2.0  # seconds: how recent a finish may be and still wait for the next fold
LOCK_TTL_MS = 30_000
CHUNK = 200  # jobs read per pipeline
MAX_FOLD = 2000  # finished jobs read by one fold (one scrape)
COUNTED = (JobState.SUCCEEDED.value, JobState.FAILED.value)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def bucket_index(seconds: float) -> int:
    """Index of the first bucket whose upper bound holds ``seconds`` (len(BUCKETS): +Inf)."""
    for i, bound in enumerate(BUCKETS):
        if seconds <= bound:
            return i
    return len(BUCKETS)


def runs(history: list[dict[str, Any]], attempts: list[dict[str, Any]], low: float, high: float):
    """Each run of a job that finished in ``(low, high]``: (queue wait, run time, attempts)."""
    for f, entry in enumerate(history):
        if entry.get("state") not in COUNTED or not (low < float(entry.get("at", 0)) <= high):
            continue
        queued = next(
            (i for i in range(f - 1, -1, -1) if history[i].get("state") == "queued"), None
        )
        if queued is None:
            continue  # failed before it was ever queued (a reference failed)
        started = next(
            (i for i in range(queued + 1, f) if history[i].get("state") == "running"), None
        )
        if started is None:
            continue  # never ran (its message could not be sent)
        t_queued = float(history[queued]["at"])
        t_started = float(history[started]["at"])
        t_final = float(entry["at"])
        # an attempt's start is stamped just before its "running" entry
        own = [a for a in attempts if t_queued <= float(a.get("start") or 0) <= t_final]
        yield max(0.0, t_started - t_queued), max(0.0, t_final - t_started), own


class LatencyLedger:
    """Running totals of job latencies, attempts and retries, per operation."""

    def __init__(self, store: StatusStore, grace: float = GRACE):
        self.store = store
        self.redis = store.redis
        self.grace = grace
        base = f"{store.prefix}api:latency"
        self.totals_key = base
        self.mark_key = f"{base}:mark"
        self.lock_key = f"{base}:lock"
        self._release = self.redis.register_script(_RELEASE)

    def fold(self, now: float | None = None) -> int:
        """Add the runs finished since the last fold; return how many. 0 when busy elsewhere."""
        token = uuid.uuid4().hex
        if not self.redis.set(self.lock_key, token, nx=True, px=LOCK_TTL_MS):
            return 0
        try:
            return self._fold(time.time() if now is None else now)
        finally:
            self._release(keys=[self.lock_key], args=[token])

    def _fold(self, now: float) -> int:
        mark_raw = self.redis.get(self.mark_key)
        low = float(mark_raw) if mark_raw else -math.inf
        high = now - self.grace
        if high <= low:
            return 0
        low_arg = "-inf" if low == -math.inf else f"({low!r}"
        found: list[tuple[float, str]] = []
        for state in COUNTED:
            index = f"{self.store.prefix}state:{state}"
            rows = self.redis.zrangebyscore(
                index, low_arg, repr(high), start=0, num=MAX_FOLD + 1, withscores=True
            )
            found += [(score, job_id) for job_id, score in rows]
        found.sort()
        if len(found) > MAX_FOLD:
            # a long backlog (the first scrape of a busy store) is folded over several scrapes
            high = found[MAX_FOLD - 1][0]
        ids = {job_id for score, job_id in found if score <= high}
        increments: dict[str, float] = defaultdict(float)
        folded = 0
        for chunk in _chunks(sorted(ids), CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for job_id in chunk:
                key = self.store.job_key(job_id)
                pipe.hget(key, "operation")
                pipe.lrange(f"{key}:history", 0, -1)
                pipe.lrange(f"{key}:attempts", 0, -1)
            raw = pipe.execute()
            for operation, history, attempts in zip(raw[::3], raw[1::3], raw[2::3], strict=True):
                if not operation:
                    continue
                entries = _json_list(history)
                tries = _json_list(attempts)
                for wait, run, own in runs(entries, tries, low, high):
                    folded += 1
                    for kind, seconds in (("queue_wait", wait), ("run", run)):
                        increments[f"b|{kind}|{operation}|{bucket_index(seconds)}"] += 1
                        increments[f"s|{kind}|{operation}"] += seconds
                        increments[f"n|{kind}|{operation}"] += 1
                    for attempt in own:
                        outcome = str(attempt.get("outcome") or "unknown")
                        increments[f"a|{operation}|{outcome}"] += 1
                        if outcome == "retrying":
                            increments[f"r|{operation}"] += 1
        pipe = self.redis.pipeline(transaction=True)
        for name, value in increments.items():
            if name.startswith("s|"):
                pipe.hincrbyfloat(self.totals_key, name, value)
            else:
                pipe.hincrby(self.totals_key, name, int(value))
        pipe.set(self.mark_key, repr(high))
        pipe.execute()
        return folded

    def snapshot(self) -> dict[str, Any]:
        """The totals: histograms per (kind, operation), attempts, retries."""
        raw = self.redis.hgetall(self.totals_key)
        histograms: dict[tuple[str, str], dict[str, Any]] = {}
        attempts: dict[tuple[str, str], int] = {}
        retries: dict[str, int] = {}

        def hist(kind: str, op: str) -> dict[str, Any]:
            return histograms.setdefault(
                (kind, op), {"buckets": [0] * (len(BUCKETS) + 1), "sum": 0.0, "count": 0}
            )

        for name, value in raw.items():
            parts = name.split("|")
            try:
                if parts[0] == "b" and len(parts) == 4:
                    hist(parts[1], parts[2])["buckets"][int(parts[3])] += int(value)
                elif parts[0] == "s" and len(parts) == 3:
                    hist(parts[1], parts[2])["sum"] = float(value)
                elif parts[0] == "n" and len(parts) == 3:
                    hist(parts[1], parts[2])["count"] = int(value)
                elif parts[0] == "a" and len(parts) == 3:
                    attempts[(parts[1], parts[2])] = int(value)
                elif parts[0] == "r" and len(parts) == 2:
                    retries[parts[1]] = int(value)
            except (ValueError, IndexError):
                continue  # a field this version does not know
        return {"histograms": histograms, "attempts": attempts, "retries": retries}


def cumulative(buckets: list[int]) -> list[tuple[str, int]]:
    """Prometheus buckets (``le`` label, cumulative count), ending with ``+Inf``."""
    out: list[tuple[str, int]] = []
    total = 0
    for bound, count in zip((*BUCKETS, math.inf), buckets, strict=True):
        total += count
        out.append(("+Inf" if bound == math.inf else repr(bound), total))
    return out


def _json_list(items: Iterable[str]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        try:
            value = json.loads(item)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
