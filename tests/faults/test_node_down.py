"""Fault 3: the node stopped in the middle of a bulk, for longer than several retry
intervals, then started again on the same port and state."""

from __future__ import annotations

import time

import pytest

from substra_worker import Client
from substra_worker.jobs import JobState
from tests.faults.conftest import FAST, Target
from tests.faults.results import record_scenario
from tests.faults.workload import Workload, check, progress, submit_workload, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

DOWN = 8.0  # seconds the node stays down: several retry_backoff_max (1s) intervals


def test_node_down_for_several_retry_intervals(settings, submitter, node, start_worker, tmp_path):
    client = Client(url=node.url, token=node.token)
    start_worker(settings, Target(node.url, node.token), concurrency=2)

    # Given ~130 jobs submitted, some of them done
    w = Workload(tmp_path, "down")
    submit_workload(submitter, tmp_path, "down", into=w, samples=120, bulk=4, part="a")
    wait_until(lambda: progress(w.jobs)[JobState.SUCCEEDED.value] >= 30, 60, "30 jobs done")

    # When the node stops (SIGTERM, requests in flight cut) for several retry intervals
    node.stop()
    at_stop = progress(w.jobs)
    # while ~120 more jobs arrive
    submit_workload(
        submitter, tmp_path, "down", into=w, samples=116, bulk=4, tuples=0, doomed=0,
        plan=False, part="b",
    )  # fmt: skip
    time.sleep(DOWN)
    during = progress(w.jobs)
    node.start()

    # Then the jobs kept retrying meanwhile, and all end once it is back
    # (no job succeeds while the node is down, but the two that were in flight)
    assert during[JobState.SUCCEEDED.value] <= at_stop[JobState.SUCCEEDED.value] + 2, during
    assert during[JobState.RETRYING.value] + during[JobState.RUNNING.value] >= 1, during
    outcome = check(w, client, timeout=120, app=submitter.app)
    retried = [j for j in w.jobs if any(a["outcome"] == "retrying" for a in j.attempts)]
    intervals = max(len(j.attempts) for j in retried) - 1
    record_scenario(
        outcome.row(
            "node-down",
            f"Node stopped {DOWN:g}s (retry interval <= {FAST['retry_backoff_max']}s), restarted",
            done_at_fault=at_stop[JobState.SUCCEEDED.value],
            jobs_that_retried=len(retried),
            most_attempts=intervals + 1,
        )
    )
    assert outcome.problems == []
    assert (outcome.lost, outcome.duplicated, outcome.orphaned) == (0, 0, 0)
    assert outcome.failed == len(w.doomed)
    assert intervals >= 4, "the outage did not span several retry intervals"
    errors = {a.get("error_class") for j in retried for a in j.attempts}
    assert errors & {"GatewayUnavailable", "ConnectionError"}, errors
