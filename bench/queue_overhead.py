"""Queue overhead: cheap jobs end to end, against no-op Celery tasks on the same worker.

Ours: N ``link_dataset_with_data_samples`` jobs on keys the node already holds,
through Submitter -> Redis -> worker -> node -> status store, timed from the
first submit to the last job recorded ``succeeded``.
Baseline: N messages of a task that does nothing (``bench.noop``), sent with the
same producer app to the same queue and run by the same worker process (same
pool, concurrency, late acks, prefetch), timed from the first send to the last
run. For scale, the N node calls alone (one Client, in a loop) are timed too.
"""

from __future__ import annotations

import time
import uuid

from bench import jobs, noop
from bench.data import make_samples, register_dataset
from bench.measure import BenchError, rate, ratio, summarize, wait_until
from bench.report import Line, Result, Target
from bench.runner import Context
from bench.stack import Node, Worker
from substra_worker.settings import Settings
from substra_worker.submitter import Submitter

NAME = "queue_overhead"
TITLE = "Queue overhead"
SIZES = {"quick": {"jobs": 100, "repeat": 1}, "full": {"jobs": 1000, "repeat": 3}}
WORKER_CONCURRENCY = 4  # the settings' default
SAMPLES = 10  # samples the link jobs cycle through
TARGET = Target(">=", 0.5)
TIMEOUT = 600.0  # seconds
POLL = 0.01  # seconds between two reads of the status store or the counter
OPERATION = "link_dataset_with_data_samples"


def run(ctx: Context) -> Result:
    n = ctx.sizes["jobs"]
    redis = ctx.redis()
    node = ctx.started(Node(ctx.work / "node"))
    client = node.client()
    ctx.stack.callback(client.close)
    source = register_dataset(client, ctx.work, "source")
    target = register_dataset(client, ctx.work, "target")
    folders = make_samples(ctx.work / "samples", SAMPLES, "queue")
    keys = [
        s["pkhash"]
        for s in client.add_data_samples(
            {"paths": [str(f) for f in folders], "data_manager_keys": [source], "test_only": False}
        )
    ]
    ctx.started(
        Worker(
            ctx.work / "worker.log",
            redis_url=redis.url,
            node=node,
            concurrency=WORKER_CONCURRENCY,
            settings={"state_dir": ctx.work / "worker"},
        )
    )
    settings = Settings(redis_url=redis.url, state_dir=ctx.work / "producer")
    runs: dict[str, list[dict]] = {"noop": [], "jobs": [], "direct": []}
    with Submitter(settings, producer="bench") as submitter:
        # warm both paths (first connection, first task import in each pool process)
        _noop_run(submitter, 2 * WORKER_CONCURRENCY)
        _jobs_run(submitter, target, keys, 2 * WORKER_CONCURRENCY)
        for _ in range(ctx.sizes["repeat"]):  # in turn, so that noise hits them alike
            ctx.log(f"{n} no-op tasks, {n} link jobs, {n} direct calls")
            runs["noop"].append(_noop_run(submitter, n))
            runs["jobs"].append(_jobs_run(submitter, target, keys, n))
            runs["direct"].append(_direct(client, target, keys, n))
    baseline, ours, direct = (summarize(runs[k], "per_s") for k in ("noop", "jobs", "direct"))
    return Result(
        NAME,
        TITLE,
        ctx.sizes,
        settings={"worker_concurrency": WORKER_CONCURRENCY, "pool": "prefork", "prefetch": 1},
        measured={"link_jobs": ours},
        baseline={"noop_tasks": baseline, "direct_client_calls": direct},
        lines=[
            Line(
                "jobs_vs_noop",
                f"{n} `link_dataset_with_data_samples` jobs end to end, "
                f"{WORKER_CONCURRENCY} worker processes",
                f"{ours['per_s']:.0f} jobs/s",
                f"no-op Celery tasks, same worker: {baseline['per_s']:.0f}/s",
                ratio(ours["per_s"], baseline["per_s"]),
                TARGET,
            ),
            Line(
                "jobs_vs_direct_calls",
                f"the same {n} links, queued vs called directly",
                f"{ours['per_s']:.0f} jobs/s",
                f"one Client, in a loop: {direct['per_s']:.0f} calls/s",
                ratio(ours["per_s"], direct["per_s"]),
            ),
        ],
        notes=[f"medians of {ctx.sizes['repeat']} runs of each, run in turn"],
    )


def _direct(client, dataset: str, keys: list[str], n: int) -> dict:
    started = time.perf_counter()
    for i in range(n):
        client.link_dataset_with_data_samples(dataset, [keys[i % len(keys)]])
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "per_s": round(rate(n, seconds), 1)}


def _noop_run(submitter: Submitter, n: int) -> dict:
    run_id = uuid.uuid4().hex
    counter = submitter.store.redis
    key = noop.counter_key(run_id)
    started = time.perf_counter()
    for _ in range(n):
        noop.send_noop(submitter.app, run_id)
    send_seconds = time.perf_counter() - started
    wait_until(lambda: int(counter.get(key) or 0) >= n, TIMEOUT, interval=POLL, what="no-ops")
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 3),
        "send_seconds": round(send_seconds, 3),
        "per_s": round(rate(n, seconds), 1),
    }


def _jobs_run(submitter: Submitter, dataset: str, keys: list[str], n: int) -> dict:
    before, failed_before = jobs.finished(submitter.store, OPERATION)
    started = time.perf_counter()
    for i in range(n):
        submitter.link_dataset_with_data_samples(dataset, [keys[i % len(keys)]])
    submit_seconds = time.perf_counter() - started

    def done() -> bool:
        succeeded, failed = jobs.finished(submitter.store, OPERATION)
        if failed > failed_before:
            raise BenchError(f"a link job failed: {jobs.first_error(submitter.store, OPERATION)}")
        return succeeded - before >= n

    wait_until(done, TIMEOUT, interval=POLL, what=f"{n} link jobs")
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 3),
        "submit_seconds": round(submit_seconds, 3),
        "per_s": round(rate(n, seconds), 1),
    }
