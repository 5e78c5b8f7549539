"""Fault 1: the worker is SIGKILLed in the middle of a large upload, of a compute-plan
submission and of a bulk of small jobs, then a new worker is started."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from substra_worker import Client
from substra_worker.jobs import JobState
from substra_worker.node.keys import data_sample_key
from substra_worker.tasks.effects import STAMP
from tests.faults.conftest import Target
from tests.faults.proxy import Rule
from tests.faults.results import record_scenario
from tests.faults.workload import (
    Workload,
    check,
    plan_data,
    progress,
    submit_workload,
    wait_final,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

BIG = 64 * 1024**2  # bytes of the large sample
BIG_RATE = 12 * 1024**2  # bytes per second the proxy lets the large upload through


def big_sample(folder: Path) -> Path:
    """A sample folder of one large file of random bytes (incompressible)."""
    folder.mkdir(parents=True)
    with open(folder / "blob.bin", "wb") as f:
        for _ in range(BIG // (4 * 1024**2)):
            f.write(os.urandom(4 * 1024**2))
    return folder


def test_worker_killed_mid_upload_mid_plan_mid_bulk(
    settings, submitter, node, proxy_for, start_worker, tmp_path
):
    client = Client(url=node.url, token=node.token)
    proxy = proxy_for(node)
    throttle = Rule(
        "throttle large uploads", "throttle", path="/data_sample/", min_body=BIG // 2, rate=BIG_RATE
    )
    hold = Rule("hold the plan's answer", "hold", path="/compute_plan/")
    lag = Rule("lag small uploads", "lag", path="/data_sample/", delay=0.03)
    proxy.set_rules(throttle, hold, lag)
    worker_tmp = tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    env = {"TMPDIR": str(worker_tmp)}
    worker = start_worker(settings, Target(proxy.url, node.token), concurrency=3, env=env)

    # Given a dataset, an algo and a few samples already registered through jobs
    w = Workload(tmp_path, "killed")
    submit_workload(
        submitter, tmp_path, "killed", into=w, part="setup",
        samples=5, tuples=0, bulk=0, doomed=0, plan=False,
    )  # fmt: skip
    assert not wait_final(w.jobs, 60)
    setup = [j for j in w.jobs if w.kinds[j.id] == "sample"]
    # and then a large sample, a compute plan and a bulk of ~250 small jobs
    big_folder = big_sample(tmp_path / "big" / "big-sample")
    big = w.add(
        submitter.add_data_sample({"path": str(big_folder), "data_manager_keys": [w.dataset]}),
        "sample",
    )
    plan = w.add(submitter.add_compute_plan(plan_data(w, setup[:2])), "plan")
    submit_workload(submitter, tmp_path, "killed", into=w, part="bulk")
    bulk_jobs = w.jobs[w.jobs.index(plan) + 1 :]

    # When the worker is SIGKILLed (pool included) while the large upload is a quarter
    # through, the node has created the plan but its answer has not reached the worker,
    # and part of the small jobs are done
    def mid_everything() -> bool:
        uploads = proxy.in_flight(min_total=BIG // 2)
        return (
            any(0.2 * (t.total or 1) < t.sent < 0.8 * (t.total or 1) for t in uploads)
            and proxy.injected[hold.name] == 1
            and progress(bulk_jobs)[JobState.SUCCEEDED.value] >= 20
        )

    wait_until(mid_everything, 60, "the large upload, the plan and the bulk in flight")
    worker.kill()
    at_kill = progress(bulk_jobs)
    left_behind = list(worker_tmp.rglob("*.zip"))
    assert left_behind, "the killed upload's zip should still be on disk"
    assert big.refresh().state is JobState.RUNNING
    assert plan.refresh().state is JobState.RUNNING
    assert [p for p in client.list_compute_plan() if p["metadata"].get(STAMP) == plan.id]
    assert at_kill[JobState.SUCCEEDED.value] < len(bulk_jobs) - 50, at_kill

    # and a new worker starts, with the network back to normal
    proxy.set_rules()
    hold.release()
    start_worker(settings, Target(proxy.url, node.token), concurrency=3, env=env)

    # Then every job ends, each asset is on the node once, the plan is the one the
    # lost attempt created, and the large sample is whole
    outcome = check(w, client, timeout=120, app=submitter.app)
    record_scenario(
        outcome.row(
            "worker-killed",
            "Worker SIGKILLed mid 64 MB upload, mid compute-plan submission, mid bulk",
            # the large upload and the plan, and the small jobs not done yet
            in_flight_at_fault=2
            + len(bulk_jobs)
            - at_kill[JobState.SUCCEEDED.value]
            - at_kill[JobState.FAILED.value],
        )
    )
    assert outcome.problems == []
    assert (outcome.lost, outcome.duplicated, outcome.orphaned) == (0, 0, 0)
    assert outcome.failed == len(w.doomed)
    assert big.refresh().key == data_sample_key(big_folder)
    for job in (big, plan):
        outcomes = [a["outcome"] for a in job.refresh().attempts]
        assert outcomes == ["lost", "succeeded"], outcomes
        assert job.attempts[0]["error_class"] == "WorkerLost"
    assert (plan.result or {})["key"] == next(
        p["computePlanID"] for p in client.list_compute_plan() if p["metadata"][STAMP] == plan.id
    )
    # the new worker removed the zips of the killed processes
    assert not [z for z in left_behind if z.exists()]
    # the interrupted upload left nothing in the node's spool folder
    spool = [p for p in (node.node_dir / "uploads").rglob("*") if p.is_file()]
    assert spool == []
