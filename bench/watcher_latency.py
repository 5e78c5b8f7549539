"""Watcher latency: from a folder becoming ready to its job being queued.

Folders arrive one by one, every ``interval`` seconds, in two channels of one
``substra-worker watch`` process (with a worker and the node running, as in use):

- marker: the folder is renamed into the channel, then ``<folder>.ready`` is
  written; it is ready when the marker exists;
- quiet period: the folder is written in place; it is ready ``quiet_period``
  seconds after its last write.

The latency of a folder is its job's ``created_at`` in the status store minus
that moment. It splits into detection (until the watcher recorded the folder
ready, ``ready_at``) and batching (until its batch was submitted: a batch is
sent when full or when its oldest folder has waited ``batch_window``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import redis

from bench.data import register_dataset, write_sample
from bench.measure import BenchError, percentile, wait_until
from bench.report import Line, Result
from bench.runner import Context
from bench.stack import Node, Watcher, Worker
from substra_worker.settings import Settings
from substra_worker.status_store import StatusStore
from substra_worker.watcher.state import WatchState

NAME = "watcher_latency"
TITLE = "Watcher latency"
SIZES = {
    "quick": {"folders_per_mode": 20, "interval_s": 0.05},
    "full": {"folders_per_mode": 200, "interval_s": 0.05},
}
WATCH_SETTINGS = {"quiet_period": 2.0, "batch_window": 1.0, "batch_size": 50}  # the defaults
TIMEOUT = 300.0  # seconds for every folder to be in a job


def run(ctx: Context) -> Result:
    n = ctx.sizes["folders_per_mode"]
    interval = ctx.sizes["interval_s"]
    server = ctx.redis()
    node = ctx.started(Node(ctx.work / "node"))
    with node.client() as client:
        dataset = register_dataset(client, ctx.work, "latency")
    ctx.started(
        Worker(
            ctx.work / "worker.log",
            redis_url=server.url,
            node=node,
            concurrency=4,
            settings={"state_dir": ctx.work / "worker"},
        )
    )
    root = ctx.folder("watch")
    for mode in ("marker", "quiet"):
        channel = ctx.folder("watch", mode)
        (channel / "channel.json").write_text(json.dumps({"dataset_key": dataset}))
    ctx.started(
        Watcher(
            root,
            ctx.work / "watch.log",
            redis_url=server.url,
            settings={**WATCH_SETTINGS, "state_dir": ctx.work / "watcher"},
        )
    )
    state = WatchState(redis.Redis.from_url(server.url, decode_responses=True), root)
    store = StatusStore.from_settings(Settings(redis_url=server.url))
    ctx.stack.callback(store.close)
    ctx.stack.callback(state.redis.close)
    measured = {}
    for mode in ("marker", "quiet"):
        ctx.log(f"{n} folders, ready by {mode}, one every {interval}s")
        ready = _drop(root / mode, n, interval, marker=mode == "marker")
        measured[mode] = _latencies(state, store, mode, ready)
    quiet = WATCH_SETTINGS["quiet_period"]
    return Result(
        NAME,
        TITLE,
        ctx.sizes,
        settings={**WATCH_SETTINGS, "worker_concurrency": 4},
        measured=measured,
        lines=[
            Line(
                f"latency_{mode}",
                f"Watcher latency, ready {what}, to job queued",
                f"p50 {m['p50_s']:.2f} s, p99 {m['p99_s']:.2f} s",
                "",
            )
            for mode, what, m in (
                ("marker", "by marker file", measured["marker"]),
                ("quiet", f"by quiet period ({quiet:g} s)", measured["quiet"]),
            )
        ],
        notes=[
            f"detection (ready to seen ready) p50 {measured['marker']['detect_p50_s']:.2f} s "
            f"with markers, {measured['quiet']['detect_p50_s']:.2f} s with the quiet period; "
            f"the rest is the batch window ({WATCH_SETTINGS['batch_window']:g} s): a folder "
            "waits for its batch to fill or for the window to close"
        ],
    )


def _drop(channel: os.PathLike, n: int, interval: float, *, marker: bool) -> dict[str, float]:
    """Make ``n`` folders arrive in ``channel``; return when each became ready (epoch s)."""
    channel = os.fspath(channel)
    staging = os.path.join(channel, ".staging")
    ready: dict[str, float] = {}
    quiet = WATCH_SETTINGS["quiet_period"]
    next_at = time.monotonic()
    for i in range(n):
        name = f"f{i:04d}"
        if marker:
            folder = write_sample(Path(staging, name), f"{channel}/{name}")
            os.rename(folder, os.path.join(channel, name))
            with open(os.path.join(channel, name + ".ready"), "w"):
                pass
            ready[name] = time.time()
        else:
            write_sample(Path(channel, name), f"{channel}/{name}")
            ready[name] = time.time() + quiet
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    return ready


def _latencies(
    state: WatchState, store: StatusStore, channel: str, ready: dict[str, float]
) -> dict[str, float]:
    keys = {f"{channel}/{name}": name for name in ready}

    def all_in_jobs() -> dict | None:
        records = {r.key: r for r in state.folders(channel=channel) if r.key in keys}
        if any(r.status in ("rejected", "failed") for r in records.values()):
            bad = [r for r in records.values() if r.status in ("rejected", "failed")]
            raise BenchError(f"{bad[0].key}: {bad[0].status}: {bad[0].reason}")
        if len(records) == len(keys) and all(r.job_id for r in records.values()):
            return records
        return None

    records = wait_until(all_in_jobs, TIMEOUT, interval=0.2, what="every folder in a job")
    created = {}
    for job_id in {r.job_id for r in records.values()}:
        value = store.get_fields(job_id, "created_at")["created_at"]
        if value is None:
            raise BenchError(f"job {job_id} has no record")
        created[job_id] = value
    total, detect = [], []
    for key, rec in records.items():
        at = ready[keys[key]]
        total.append(created[rec.job_id] - at)
        if rec.ready_at is not None:
            detect.append(rec.ready_at - at)
    return {
        "folders": len(total),
        "jobs": len(created),
        "p50_s": round(percentile(total, 50), 3),
        "p99_s": round(percentile(total, 99), 3),
        "max_s": round(max(total), 3),
        "detect_p50_s": round(percentile(detect, 50), 3),
        "detect_p99_s": round(percentile(detect, 99), 3),
    }
