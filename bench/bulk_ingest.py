"""Bulk ingest: many small sample folders registered on the embedded node, three ways.

(a) baseline: a plain loop of ``Client.add_data_sample``, what a user writes instead;
(b) the ``Submitter``: ``add_data_samples`` jobs of ``batch_size`` folders each, run
    by one Celery worker with ``worker_concurrency`` processes (and, for comparison,
    one job holding every folder, whose batches one worker process runs in turn);
(c) the watcher: the folders are renamed into a channel and marked ready, and
    ``substra-worker watch`` turns them into the same jobs, run by the same worker.

Each variant has a node of its own (fresh state) and folders of its own. (b) is
timed from the first submit to the last job succeeded, (c) from the first folder
dropped to the last job succeeded; both then check that the node holds every
sample, linked to the dataset.
"""

from __future__ import annotations

import json
import os
import time

from bench import jobs
from bench.data import SAMPLE_FILES, make_samples, register_dataset
from bench.measure import BenchError, rate, ratio, summarize, wait_until
from bench.report import Line, Result, Target
from bench.runner import Context
from bench.stack import Node, Watcher, Worker
from substra_worker.settings import Settings
from substra_worker.status_store import StatusStore
from substra_worker.submitter import Submitter

NAME = "bulk_ingest"
TITLE = "Bulk ingest"
SIZES = {
    "quick": {"samples": 100, "files_per_sample": SAMPLE_FILES, "repeat": 1},
    "full": {"samples": 2000, "files_per_sample": SAMPLE_FILES, "repeat": 3},
}
# The levers, as a deployment would set them. Both are the product's defaults:
# 4 worker processes keep the node busy while each prepares its next batch, and
# batches of 50 folders take most of the per-request cost off each sample.
WORKER_CONCURRENCY = 4
BATCH_SIZE = 50
# Not a default (that is 1): the node registers uploads in 2 processes, one per core,
# for every variant, the plain loop included.
NODE_PROCESSES = 2
# The watcher's own timings, also the defaults. Folders are marked ready, so the
# quiet period does not apply; the batch window bounds how long a partial batch waits.
WATCH_SETTINGS = {"quiet_period": 2.0, "batch_window": 1.0, "batch_size": BATCH_SIZE}
TARGET = Target(">=", 3.0)
TIMEOUT = 900.0  # seconds: longest a variant may take before the benchmark gives up
POLL = 0.02  # seconds between two reads of the status store


def run(ctx: Context) -> Result:
    n = ctx.sizes["samples"]
    runs: dict[str, list[dict]] = {"sequential": [], "submitter": [], "one_job": [], "watcher": []}
    for i in range(ctx.sizes["repeat"]):  # the variants in turn, so that noise hits them alike
        runs["sequential"].append(_sequential(ctx, n, f"sequential-{i}"))
        runs["submitter"].append(_submitter(ctx, n, BATCH_SIZE, f"submitter-{i}"))
        runs["one_job"].append(_submitter(ctx, n, n, f"one-job-{i}"))
        runs["watcher"].append(_watcher(ctx, n, f"watcher-{i}"))
    sequential, submitter, single_job, watcher = (
        summarize(runs[k], "samples_per_s")
        for k in ("sequential", "submitter", "one_job", "watcher")
    )
    seq_rate = sequential["samples_per_s"]
    return Result(
        NAME,
        TITLE,
        {**ctx.sizes, "bytes_per_sample": sequential.pop("bytes_per_sample")},
        settings={
            "node_processes": NODE_PROCESSES,
            "worker_concurrency": WORKER_CONCURRENCY,
            "batch_size": BATCH_SIZE,
            "paths_per_job": BATCH_SIZE,
            "pool": "prefork",
            **{f"watch_{k}": v for k, v in WATCH_SETTINGS.items()},
            "watch_readiness": "marker",
        },
        measured={"submitter": submitter, "submitter_one_job": single_job, "watcher": watcher},
        baseline={"sequential_client": sequential},
        lines=[
            Line(
                "submitter_vs_sequential",
                f"Bulk ingest of {n} folders: Submitter, {WORKER_CONCURRENCY} worker processes, "
                f"batches of {BATCH_SIZE}, node on {NODE_PROCESSES} processes",
                f"{submitter['samples_per_s']:.0f} samples/s",
                f"`add_data_sample` loop: {seq_rate:.0f} samples/s",
                ratio(submitter["samples_per_s"], seq_rate),
                TARGET,
            ),
            Line(
                "one_job_vs_sequential",
                f"Bulk ingest of {n} folders: Submitter, all in one job (its batches run in turn)",
                f"{single_job['samples_per_s']:.0f} samples/s",
                f"`add_data_sample` loop: {seq_rate:.0f} samples/s",
                ratio(single_job["samples_per_s"], seq_rate),
            ),
            Line(
                "watcher_vs_sequential",
                f"Bulk ingest of {n} folders: watcher (marker files), same worker",
                f"{watcher['samples_per_s']:.0f} samples/s",
                f"`add_data_sample` loop: {seq_rate:.0f} samples/s",
                ratio(watcher["samples_per_s"], seq_rate),
                TARGET,
            ),
        ],
        notes=[
            f"the Submitter's caller was blocked {submitter['submit_seconds']:.2f}s "
            f"to queue {n} folders, against {sequential['seconds']:.1f}s for the loop",
            f"medians of {ctx.sizes['repeat']} runs of each variant, run in turn "
            "(every run's rate is in the JSON)",
        ],
    )


def _node(ctx: Context, variant: str) -> tuple[Node, str]:
    node = ctx.started(Node(ctx.work / f"node-{variant}", {"node_processes": NODE_PROCESSES}))
    with node.client() as client:
        dataset = register_dataset(client, ctx.work, variant)
    return node, dataset


def _check_node(node: Node, dataset: str, n: int) -> None:
    with node.client() as client:
        linked = client.get_dataset(dataset)["trainDataSampleKeys"]
    if len(linked) != n:
        raise BenchError(f"the node holds {len(linked)} samples of the dataset, expected {n}")


def _sequential(ctx: Context, n: int, variant: str) -> dict:
    node, dataset = _node(ctx, variant)
    folders = make_samples(ctx.work / f"samples-{variant}", n, variant)
    ctx.log(f"(a) {n} add_data_sample calls")
    with node.client() as client:
        started = time.perf_counter()
        for folder in folders:
            client.add_data_sample(
                {"path": str(folder), "data_manager_keys": [dataset], "test_only": False}
            )
        seconds = time.perf_counter() - started
    _check_node(node, dataset, n)
    node.stop()
    return {
        "seconds": round(seconds, 3),
        "samples_per_s": round(rate(n, seconds), 1),
        "bytes_per_sample": sum(f.stat().st_size for f in folders[0].iterdir()),
    }


def _worker(ctx: Context, variant: str, redis_url: str, node: Node) -> Worker:
    return ctx.started(
        Worker(
            ctx.work / f"worker-{variant}.log",
            redis_url=redis_url,
            node=node,
            concurrency=WORKER_CONCURRENCY,
            settings={"batch_size": BATCH_SIZE, "state_dir": ctx.work / f"worker-{variant}"},
        )
    )


def _wait_registered(store: StatusStore, n: int) -> None:
    def done() -> bool:
        count, failed = jobs.registered_samples(store)
        if failed:
            raise BenchError(
                f"an add_data_samples job failed: {jobs.first_error(store, 'add_data_samples')}"
            )
        return count >= n

    wait_until(done, TIMEOUT, interval=POLL, what=f"{n} samples registered")


def _submitter(ctx: Context, n: int, per_job: int, variant: str) -> dict:
    redis = ctx.redis(f"redis-{variant}")
    node, dataset = _node(ctx, variant)
    worker = _worker(ctx, variant, redis.url, node)
    folders = [str(f) for f in make_samples(ctx.work / f"samples-{variant}", n, variant)]
    settings = Settings(redis_url=redis.url, batch_size=BATCH_SIZE, state_dir=ctx.work / "producer")
    ctx.log(f"(b) {n} folders through the Submitter, {per_job} per job")
    with Submitter(settings, producer="bench") as submitter:
        submitter.store.redis.ping()  # connected before the clock starts
        started = time.perf_counter()
        for i in range(0, n, per_job):
            data = {
                "paths": folders[i : i + per_job],
                "data_manager_keys": [dataset],
                "test_only": False,
            }
            submitter.add_data_samples(data)
        submit_seconds = time.perf_counter() - started
        _wait_registered(submitter.store, n)
        seconds = time.perf_counter() - started
    _check_node(node, dataset, n)
    for process in (worker, node, redis):
        process.stop()
    return {
        "seconds": round(seconds, 3),
        "submit_seconds": round(submit_seconds, 3),
        "jobs": -(-n // per_job),
        "samples_per_s": round(rate(n, seconds), 1),
    }


def _watcher(ctx: Context, n: int, variant: str) -> dict:
    redis = ctx.redis(f"redis-{variant}")
    node, dataset = _node(ctx, variant)
    worker = _worker(ctx, variant, redis.url, node)
    root = ctx.folder(f"watch-{variant}")
    channel = ctx.folder(f"watch-{variant}", "bench")
    (channel / "channel.json").write_text(json.dumps({"dataset_key": dataset}))
    # built out of sight (hidden names are ignored), then renamed into view: an atomic drop
    folders = make_samples(channel / ".staging", n, variant)
    watcher = ctx.started(
        Watcher(
            root,
            ctx.work / f"{variant}.log",
            redis_url=redis.url,
            settings={**WATCH_SETTINGS, "state_dir": ctx.work / variant},
        )
    )
    ctx.log(f"(c) {n} folders dropped into a watched channel")
    store = StatusStore.from_settings(Settings(redis_url=redis.url))
    ctx.stack.callback(store.close)
    started = time.perf_counter()
    for folder in folders:
        target = channel / folder.name
        os.rename(folder, target)
        (channel / f"{folder.name}.ready").touch()
    drop_seconds = time.perf_counter() - started
    _wait_registered(store, n)
    seconds = time.perf_counter() - started
    _check_node(node, dataset, n)
    job_count = jobs.finished(store, "add_data_samples")[0]
    for process in (watcher, worker, node, redis):
        process.stop()
    return {
        "seconds": round(seconds, 3),
        "drop_seconds": round(drop_seconds, 3),
        "jobs": job_count,
        "samples_per_s": round(rate(n, seconds), 1),
    }
