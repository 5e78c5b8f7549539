"""Fault 6: ``substra-worker up`` stopped with SIGTERM (warm shutdown) while jobs are in
flight, then ``up`` again on the same state folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from substra_worker import Client
from substra_worker.jobs import Job, JobState
from substra_worker.redis_server import BundledRedis
from substra_worker.settings import Settings
from substra_worker.submitter import Submitter
from substra_worker.tasks.app import send_job
from substra_worker.tasks.recovery import recover
from tests.faults.conftest import FAST, NODE_ENV
from tests.faults.proxy import Rule
from tests.faults.results import record_reliability_check, record_scenario
from tests.faults.workload import (
    Workload,
    check,
    dataset_data,
    progress,
    submit_workload,
    wait_final,
    wait_until,
)
from tests.support.node_process import start_node

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


class Up:
    """``substra-worker up --no-watch --no-api`` as a real process on one state folder."""

    def __init__(self, state_dir: Path, log: Path, **extra_env: str):
        self.state_dir = state_dir
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUBSTRA_WORKER_")}
        env.update({f"SUBSTRA_WORKER_{k.upper()}": str(v) for k, v in FAST.items()})
        env.update(NODE_ENV, SUBSTRA_WORKER_STATE_DIR=str(state_dir), PYTHONUNBUFFERED="1")
        env.update(extra_env)
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> Up:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "substra_worker", "up", "--no-watch", "--no-api", "-c", "2"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        wait_until(lambda: "substra-worker is up" in self.text(offset), 120, "up to be up")
        return self

    def text(self, offset: int = 0) -> str:
        text = self.log.read_text(errors="replace")
        if self.process.poll() is not None and "substra-worker is up" not in text[offset:]:
            raise AssertionError(f"up exited with {self.process.returncode}:\n{text[offset:]}")
        return text[offset:]

    def terminate(self, timeout: float = 120) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def submitter(self) -> Submitter:
        """A producer on this state folder: it finds Redis through ``runtime.json``."""
        return Submitter(Settings.from_env({}, state_dir=self.state_dir))


def rebind(w: Workload, submitter: Submitter) -> Workload:
    """The workload's jobs read through another producer (Redis moved to another port)."""
    out = Workload(w.tmp, w.tag, kinds=dict(w.kinds), doomed=set(w.doomed))
    out.jobs = [Job.load(submitter.store, j.id) for j in w.jobs]
    return out


def test_up_sigterm_with_jobs_in_flight_then_up_again(tmp_path):
    state = tmp_path / "state"
    up = Up(state, tmp_path / "up.log").start()
    try:
        # Given ~250 jobs submitted to a running `up`, part of them done
        first = up.submitter()
        w = submit_workload(first, tmp_path, "up")
        wait_until(lambda: progress(w.jobs)[JobState.SUCCEEDED.value] >= 30, 60, "30 jobs done")

        # When `up` gets SIGTERM: it stops its worker, then Redis (which flushes its AOF)
        assert up.terminate() == 0
        first.close()

        # and `up` runs again on the same state folder (Redis and the node on new ports)
        up.start()
        second = up.submitter()
        w2 = rebind(w, second)
        at_restart = progress(w2.jobs)
        assert at_restart[JobState.SUCCEEDED.value] < len(w.jobs) - 50, at_restart

        # Then every job ends (with, if need be, the sweep a worker runs every few minutes)
        stuck = wait_final(w2.jobs, 45)
        swept = []
        if stuck:
            swept = recover(second.store, lambda j, n: send_job(second.app, j, n), older_than=0)
        assert wait_final(w2.jobs, 60) == []
        second.close()
        assert up.terminate() == 0
    finally:
        up.kill()

    # Read the outcome with `up` stopped: its Redis (append-only file) and its node's state
    redis_server = BundledRedis(state / "redis")
    redis_server.start()
    node = start_node(state)
    try:
        with Submitter(Settings(redis_url=redis_server.url, state_dir=state)) as reader:
            outcome = check(rebind(w, reader), Client(url=node.url, token=node.token), timeout=5)
    finally:
        node.stop()
        redis_server.stop()
    record_scenario(
        outcome.row(
            "up-sigterm",
            "`up` stopped with SIGTERM (warm shutdown) with jobs in flight, then `up` again",
            in_flight_at_fault=len(w.jobs)
            - at_restart[JobState.SUCCEEDED.value]
            - at_restart[JobState.FAILED.value],
            recovered_by_sweep=len(swept),
        )
    )
    assert outcome.problems == []
    assert (outcome.lost, outcome.duplicated, outcome.orphaned) == (0, 0, 0)
    assert outcome.failed == len(w.doomed)


def test_up_sigterm_lets_a_running_job_finish(node, proxy_for, tmp_path):
    check = "`up` stopped with SIGTERM lets a running job finish (warm shutdown)"
    record_reliability_check(check, "gap", "the pool processes get SIGTERM too: attempt lost")
    # a node behind a proxy that takes 4s to pass a dataset on: the job is surely running
    proxy = proxy_for(node)
    proxy.set_rules(Rule("slow dataset", "lag", path="/data_manager/", delay=4.0))
    state = tmp_path / "state"
    up = Up(
        state,
        tmp_path / "up.log",
        SUBSTRA_WORKER_NODE_URL=proxy.url,
        SUBSTRA_WORKER_NODE_TOKEN=node.token,
    ).start()
    try:
        with up.submitter() as producer:
            job = producer.add_dataset(dataset_data(tmp_path, "warm"))
            wait_until(lambda: proxy.injected["slow dataset"] == 1, 30, "the dataset request")
            assert job.refresh().state is JobState.RUNNING
        # When `up` is asked to stop while the job runs
        assert up.terminate() == 0
    finally:
        up.kill()
    # Then the job finished before the worker stopped: one attempt, succeeded
    redis_server = BundledRedis(state / "redis")
    redis_server.start()
    try:
        with Submitter(Settings(redis_url=redis_server.url, state_dir=state)) as reader:
            record = reader.get_job(job.id)
            assert [a["outcome"] for a in record.attempts] == ["succeeded"], record.attempts
            assert record.state is JobState.SUCCEEDED
            record_reliability_check(check, "pass")
    finally:
        redis_server.stop()
