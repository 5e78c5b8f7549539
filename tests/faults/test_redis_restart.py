"""Fault 2: Redis stopped and restarted (append-only file kept) in the middle of a bulk
submission, with workers running; and what a producer sees while Redis stays down."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis

from substra_worker import Client
from substra_worker.jobs import JobState
from substra_worker.submitter import Submitter
from tests.assets import make_sample_folders
from tests.faults.conftest import Target
from tests.faults.results import record_scenario
from tests.faults.workload import Workload, check, progress, submit_workload

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

OUTAGE = 3.0  # seconds Redis stays down


def test_redis_restarted_mid_bulk_submission(
    bundled_redis, settings, submitter, node, start_worker, tmp_path
):
    client = Client(url=node.url, token=node.token)
    worker = start_worker(settings, Target(node.url, node.token), concurrency=2)
    restarted = threading.Event()
    blocked: list[float] = []  # seconds each submit call took
    at_stop: Counter = Counter()
    w = Workload(tmp_path, "redis")

    def restart_later() -> None:
        time.sleep(OUTAGE)
        bundled_redis.start()
        restarted.set()

    def on_submit(n: int) -> None:
        # When Redis is stopped (SIGTERM: it flushes its append-only file) after the
        # 120th job, with workers busy, and started again 3s later on the same port
        if n == 120:
            at_stop.update(progress(w.jobs))
            bundled_redis.stop()
            threading.Thread(target=restart_later, daemon=True).start()
        blocked.append(time.monotonic())

    # Given a producer submitting ~250 jobs as fast as it can
    submit_workload(submitter, tmp_path, "redis", into=w, on_submit=on_submit)
    assert restarted.wait(30)
    submit_calls = [b - a for a, b in zip(blocked, blocked[1:], strict=False)]

    # Then the producer's calls block while Redis is down and go on once it is back
    # (none raised: submit_workload would have)...
    assert max(submit_calls) >= OUTAGE * 0.5, max(submit_calls)
    # ...and every job ends, each asset once on the node
    outcome = check(w, client, timeout=120, app=submitter.app)
    record_scenario(
        outcome.row(
            "redis-restart",
            f"Redis stopped {OUTAGE:g}s and restarted (AOF) mid bulk submission",
            producer_blocked_seconds=round(max(submit_calls), 1),
            done_at_fault=at_stop[JobState.SUCCEEDED.value],
        )
    )
    assert outcome.problems == []
    assert (outcome.lost, outcome.duplicated, outcome.orphaned) == (0, 0, 0)
    assert outcome.failed == len(w.doomed)
    assert worker.process.poll() is None  # the worker rode it out


def test_a_producer_gives_up_with_a_redis_error_when_redis_stays_down(
    bundled_redis, settings, tmp_path
):
    folder = make_sample_folders(tmp_path / "s", 1, prefix="down")[0]
    data = {"path": str(folder), "data_manager_keys": ["a" * 64]}
    with Submitter(settings) as producer:
        assert producer.add_data_sample(data).state is JobState.QUEUED
        bundled_redis.stop()
        # When Redis is down for good, a submit retries for a while, then raises a
        # redis ConnectionError naming the address (no job handle is returned)
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError) as info:
            producer.add_data_sample(data, exist_ok=True)
        waited = time.monotonic() - started
    assert f":{bundled_redis.port}" in str(info.value)
    assert 5 < waited < 40, waited
    # and nothing of the refused submission is recorded once Redis is back
    bundled_redis.start()
    client = redis.Redis.from_url(bundled_redis.url, decode_responses=True)
    try:
        assert client.zcard("sw:jobs") == 1
    finally:
        client.close()
