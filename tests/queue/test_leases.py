"""Leases and the one-step attempt: one lease keeper per process, take-over of dead holders.

Against a real Redis; the last test runs a real Celery worker and the node.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

import pytest

from substra_worker import status_store
from substra_worker.jobs import JobState
from substra_worker.tasks.operations import HOSTNAME, JobRun, LeaseKeeper
from tests.queue.test_faults import dataset_data, wait_for

KEY = "a" * 64


def dead_holder() -> str:
    """A lease holder of this host whose process has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return f"{HOSTNAME}:{process.pid}:deadbeef"


def start(store, job_id: str, holder: str, ttl: float = 60.0, take_over: str | None = None):
    return store.start_attempt(
        job_id,
        holder,
        ttl,
        attempt={"start": time.time(), "worker": holder, "outcome": "running"},
        message=f"running on {holder}",
        lost={"end": time.time(), "outcome": "lost", "error_class": "WorkerLost"},
        lost_message=f"running on {holder} (after a lost attempt)",
        take_over=take_over,
    )


def keeper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "substra-worker-leases"]


# --- the lease keeper ---------------------------------------------------------------------


def test_one_keeper_thread_renews_the_leases_of_every_job_it_holds(store, caplog):
    # Given two jobs whose leases would lapse after one second, kept by one keeper
    keeper = LeaseKeeper(interval=0.2, ttl=1.0)
    before = len(keeper_threads())
    try:
        for job_id, holder in (("a" * 32, "h:1:a"), ("b" * 32, "h:1:b")):
            assert store.acquire_lease(job_id, holder, 1.0)
            keeper.add(store, job_id, holder)
        assert len(keeper_threads()) == before + 1  # one thread for both

        # When three lease lengths pass, both leases are still held
        time.sleep(3.0)
        assert store.lease_holder("a" * 32) == "h:1:a"
        assert store.lease_holder("b" * 32) == "h:1:b"
        assert keeper.held() == {"a" * 32: "h:1:a", "b" * 32: "h:1:b"}

        # A job the keeper let go of loses its lease; the other keeps it
        keeper.discard("a" * 32)
        time.sleep(1.5)
        assert store.lease_holder("a" * 32) is None
        assert store.lease_holder("b" * 32) == "h:1:b"

        # A lease another worker took over is not extended by the keeper, and is reported
        store.clear_lease("b" * 32)
        assert store.acquire_lease("b" * 32, "someone-else", 0.8)
        with caplog.at_level(logging.WARNING):
            keeper.renew()
        assert "lease lost while running" in caplog.text
        time.sleep(1.2)
        assert store.lease_holder("b" * 32) is None
    finally:
        keeper.stop()


def test_refresh_leases_reports_the_lost_ones(store):
    assert store.acquire_lease("c" * 32, "me", 5)
    assert store.acquire_lease("d" * 32, "other", 5)
    assert store.refresh_leases({"c" * 32: "me", "d" * 32: "me", "e" * 32: "me"}, 30) == [
        "d" * 32,
        "e" * 32,
    ]
    assert store.lease_remaining("c" * 32) > 25
    assert store.lease_remaining("d" * 32) <= 5
    assert store.refresh_leases({}, 30) == []


# --- starting an attempt in one step ------------------------------------------------------


def test_start_attempt_takes_the_lease_and_records_running(submitter, store, tmp_path):
    job = submitter.add_dataset(dataset_data(tmp_path, 1))

    started = start(store, job.id, "w:1:x")

    assert started.outcome == "running" and started.state == "queued"
    assert started.envelope == job.envelope
    assert (started.attempts, started.run_attempts) == (1, 1)
    assert store.lease_holder(job.id) == "w:1:x"
    job.refresh()
    assert job.state is JobState.RUNNING
    assert [h["state"] for h in job.history] == ["queued", "running"]
    assert [a["outcome"] for a in job.attempts] == ["running"]
    assert job.attempts[0]["number"] == 1
    assert submitter.stats()["running"] == 1 and submitter.stats()["queued"] == 0


def test_a_held_lease_leaves_the_job_alone_unless_its_holder_is_named_dead(
    submitter, store, tmp_path
):
    job = submitter.add_dataset(dataset_data(tmp_path, 2))
    assert start(store, job.id, "w:1:first").outcome == "running"

    # Another worker finds it busy: nothing is written
    busy = start(store, job.id, "w:2:second")
    assert busy.outcome == "busy" and busy.holder == "w:1:first"
    assert 55 < busy.lease_remaining <= 60
    assert len(job.refresh().attempts) == 1

    # Naming a different holder as dead changes nothing either
    assert start(store, job.id, "w:2:second", take_over="w:9:nobody").outcome == "busy"

    # Taking over from the holder known dead records the lost attempt and a new one
    taken = start(store, job.id, "w:2:second", take_over="w:1:first")
    assert taken.outcome == "running" and taken.state == "running"
    assert (taken.attempts, taken.run_attempts) == (2, 2)
    assert store.lease_holder(job.id) == "w:2:second"
    job.refresh()
    assert [a["outcome"] for a in job.attempts] == ["lost", "running"]
    assert job.attempts[0]["error_class"] == "WorkerLost"
    assert "after a lost attempt" in job.history[-1]["message"]


def test_finished_waiting_and_missing_jobs_are_not_started(submitter, store, tmp_path):
    dataset = submitter.add_dataset(dataset_data(tmp_path, 3))
    link = submitter.link_dataset_with_objective(dataset, KEY)
    assert start(store, link.id, "w:1:x").outcome == "waiting"
    assert start(store, "f" * 32, "w:1:x").outcome == "missing"
    store.transition(dataset.id, JobState.CANCELED)
    final = start(store, dataset.id, "w:1:x")
    assert (final.outcome, final.state, final.waiters) == ("final", "canceled", 1)
    assert store.lease_holder(dataset.id) is None and store.lease_holder(link.id) is None


def test_a_replayed_start_starts_one_attempt(submitter, store, monkeypatch, tmp_path):
    # The same call sent twice (redis-py resends a command whose reply was lost)
    job = submitter.add_dataset(dataset_data(tmp_path, 4))
    token = type("Token", (), {"hex": "1" * 32})()
    monkeypatch.setattr(status_store.uuid, "uuid4", lambda: token)

    first = start(store, job.id, "w:1:x")
    again = start(store, job.id, "w:1:x")

    assert first.outcome == again.outcome == "running"
    assert (again.attempts, again.run_attempts) == (1, 1)
    assert len(job.refresh().attempts) == 1
    assert [h["state"] for h in job.history] == ["queued", "running"]


# --- recording the outcome ----------------------------------------------------------------


def test_an_outcome_releases_its_holders_lease_and_counts_waiters(submitter, store, tmp_path):
    dataset = submitter.add_dataset(dataset_data(tmp_path, 5))
    submitter.link_dataset_with_objective(dataset, KEY)
    start(store, dataset.id, "w:1:x")

    # Another holder's name releases nothing, and a refused change still releases
    t = store.transition(
        dataset.id, JobState.SUCCEEDED, allowed=[JobState.QUEUED], release_lease="w:2:y"
    )
    assert not t.ok and t.previous == "running" and t.waiters == 1
    assert store.lease_holder(dataset.id) == "w:1:x"

    t = store.transition(
        dataset.id,
        JobState.SUCCEEDED,
        allowed=[JobState.RUNNING],
        fields={"result": {"key": KEY}},
        release_lease="w:1:x",
    )
    assert t.ok and t.waiters == 1
    assert store.lease_holder(dataset.id) is None


def test_counts_written_by_a_transition_are_the_base_of_its_increments(submitter, store, tmp_path):
    job = submitter.add_dataset(dataset_data(tmp_path, 6))
    start(store, job.id, "w:1:x")
    store.transition(job.id, JobState.FAILED, release_lease="w:1:x")
    t = store.transition(
        job.id,
        JobState.QUEUED,
        allowed=[JobState.FAILED],
        fields={"run_attempts": "0", "error": None},
        dispatch=True,
    )
    assert t.ok and t.dispatch == 2
    started = start(store, job.id, "w:1:y")
    assert (started.attempts, started.run_attempts) == (2, 1)
    assert store.get_fields(job.id, "dispatch", "attempts", "run_attempts") == {
        "dispatch": 2,
        "attempts": 2,
        "run_attempts": 1,
    }


# --- the submitter returns the record it wrote ------------------------------------------


def test_a_submitted_job_is_the_record_as_stored(submitter, store, tmp_path):
    dataset = submitter.add_dataset(dataset_data(tmp_path, 7), idempotency_key="d7")
    waiting = submitter.link_dataset_with_objective(dataset, KEY)
    again = submitter.add_dataset(dataset_data(tmp_path, 7), idempotency_key="d7")

    for job in (dataset, waiting, again):
        assert job.to_dict() == store.load(job.id)
    assert waiting.state is JobState.WAITING and again.id == dataset.id


# --- a whole attempt --------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_job_held_by_a_dead_process_of_this_host_is_taken_over_at_once(
    settings, submitter, store, node, tmp_path
):
    # Given a job whose worker process died while running it, its lease still valid for a minute
    job = submitter.add_dataset(dataset_data(tmp_path, 8), exist_ok=True)
    assert start(store, job.id, dead_holder(), ttl=60).outcome == "running"

    # When its message is delivered again
    worker_settings = settings.replace(node_url=node.url, node_token=node.token)
    JobRun(job.id, 1, worker_settings, store, "test-worker").run()

    # Then the attempt runs now, and its lease is released with the outcome
    job.refresh()
    assert job.state is JobState.SUCCEEDED and job.key
    assert [a["outcome"] for a in job.attempts] == ["lost", "succeeded"]
    assert store.lease_holder(job.id) is None


@pytest.mark.timeout(120)
def test_a_worker_takes_over_dead_holders_and_waits_for_live_ones(
    settings, submitter, store, node, start_worker, tmp_path
):
    # Given two jobs found running: one by a dead process of this host, one by a
    # process of another host whose lease lapses in 3 seconds
    dead = submitter.add_dataset(dataset_data(tmp_path, 9), exist_ok=True)
    alive = submitter.add_dataset(dataset_data(tmp_path, 10), exist_ok=True)
    dead_lease_lapses_at = time.time() + 60
    assert start(store, dead.id, dead_holder(), ttl=60).outcome == "running"
    assert start(store, alive.id, "elsewhere:1:cafe", ttl=3).outcome == "running"
    lapses_at = time.time() + 3

    # When a worker gets their messages
    worker = start_worker(settings, node)

    # Then the dead holder's job is taken over at once...
    assert dead.wait(timeout=30)["key"]
    assert [a["outcome"] for a in dead.refresh().attempts] == ["lost", "succeeded"]
    assert dead.attempts[-1]["start"] < dead_lease_lapses_at
    # ...and the other one only once its lease lapsed
    assert alive.wait(timeout=30)["key"]
    assert [a["outcome"] for a in alive.refresh().attempts] == ["lost", "succeeded"]
    assert alive.attempts[-1]["start"] >= lapses_at - 0.1
    wait_for(lambda: "took over from a dead worker" in worker.log_text(), 10, "the log line")
    assert store.lease_holder(dead.id) is None and store.lease_holder(alive.id) is None
