"""/metrics: the Prometheus text format, read from Redis at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from substra_worker.api.latency import GRACE, LatencyLedger
from substra_worker.jobs import ACTIVE_STATES, JobState
from substra_worker.settings import Settings
from substra_worker.status_store import StatusStore
from substra_worker.watcher.state import FolderRecord, WatchState
from tests.api.stack import ApiClient, dataset_payload

UNKNOWN = "0" * 64


def scrape(api: ApiClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    response = api.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_jobs_and_queue_depth(idle_api: ApiClient):
    for i in range(3):
        idle_api.submit("cancel_compute_plan", {"compute_plan_id": f"{i:064x}"})
    idle_api.submit(
        "link_dataset_with_objective", {"dataset_key": UNKNOWN, "objective_key": UNKNOWN}
    )
    samples = scrape(idle_api)
    assert value(samples, "substra_worker_jobs", state="queued") == 4
    assert value(samples, "substra_worker_jobs", state="failed") == 0
    assert (
        value(
            samples,
            "substra_worker_jobs_by_operation",
            operation="cancel_compute_plan",
            state="queued",
        )
        == 3
    )
    # no worker on this database: the messages wait in Celery's list
    assert value(samples, "substra_worker_queue_depth", queue="substra-worker") == 4
    assert ("substra_worker_queue_unacked", ()) in samples
    assert 0 < value(samples, "substra_worker_oldest_queued_seconds") < 30


def settled(api: ApiClient, timeout: float = 60) -> dict:
    """A scrape once no job of the shared stack is active and every finish is folded.

    Jobs of earlier tests may still be finishing; their runs are folded
    ``GRACE`` seconds after they end, and must not be taken for this test's.
    """
    deadline = time.monotonic() + timeout
    while True:
        active = [
            job
            for state in sorted(s.value for s in ACTIVE_STATES)
            for job in api.get(f"/jobs?state={state}").json()["jobs"]
        ]
        if not active:
            time.sleep(GRACE + 0.3)
            return scrape(api)
        assert time.monotonic() < deadline, f"jobs still active: {active}"
        time.sleep(0.2)


def test_latency_of_a_real_job(api: ApiClient, tmp_path: Path, variant: int):
    count = "substra_worker_job_run_seconds_count"
    before = value(settled(api), count, operation="add_dataset")
    job = api.submit("add_dataset", dataset_payload(tmp_path, variant))
    assert api.wait(job["id"])["state"] == "succeeded"

    # finished runs are folded in once they are a couple of seconds old
    deadline = time.monotonic() + 15
    while True:
        samples = scrape(api)
        counted = value(samples, count, operation="add_dataset")
        assert counted <= before + 1, "a run was counted more than once"
        if counted == before + 1:
            break
        assert time.monotonic() < deadline, "the run was never counted"
        time.sleep(0.5)
    assert (
        value(samples, "substra_worker_job_queue_wait_seconds_count", operation="add_dataset") >= 1
    )
    inf = value(
        samples, "substra_worker_job_run_seconds_bucket", operation="add_dataset", le="+Inf"
    )
    assert inf == value(samples, count, operation="add_dataset")
    assert (
        value(
            samples,
            "substra_worker_job_attempts_total",
            operation="add_dataset",
            outcome="succeeded",
        )
        >= 1
    )
    # counted once: later scrapes do not add it again
    time.sleep(0.2)
    assert value(scrape(api), count, operation="add_dataset") == value(
        samples, count, operation="add_dataset"
    )


@pytest.fixture
def store(idle_settings: Settings) -> Iterator[StatusStore]:
    s = StatusStore.from_settings(idle_settings)
    yield s
    s.close()


def _run(store: StatusStore, job_id: str, outcomes: list[str], final: JobState, clock: list[float]):
    """Drive a job through attempts the way a worker records them."""
    for i, outcome in enumerate(outcomes):
        clock[0] += 1
        store.transition(
            job_id,
            JobState.RUNNING,
            message="running",
            start_attempt={"start": time.time(), "worker": "w", "outcome": "running"},
        )
        time.sleep(0.01)
        last = i == len(outcomes) - 1
        store.transition(
            job_id,
            final if last else JobState.RETRYING,
            message=outcome,
            finish_attempt={"end": time.time(), "outcome": outcome},
        )
        time.sleep(0.01)


def test_ledger_counts_each_run_once(store: StatusStore):
    # Given a job that ran twice (a retryable error, then success)
    envelope = {"id": "a" * 32, "operation": "add_algo", "payload": {}, "references": []}
    store.create(envelope)
    clock = [0.0]
    _run(store, envelope["id"], ["retrying", "succeeded"], JobState.SUCCEEDED, clock)
    # and a job that failed, was retried, then failed again
    other = {**envelope, "id": "b" * 32}
    store.create(other)
    _run(store, other["id"], ["failed"], JobState.FAILED, clock)
    store.transition(other["id"], JobState.QUEUED, message="retried")
    _run(store, other["id"], ["failed"], JobState.FAILED, clock)
    # and one canceled before it ran (not a run)
    store.create({**envelope, "id": "c" * 32})
    store.transition("c" * 32, JobState.CANCELED, message="canceled")

    ledger = LatencyLedger(store, grace=0.0)
    assert ledger.fold() == 3
    snap = ledger.snapshot()
    run = snap["histograms"][("run", "add_algo")]
    assert run["count"] == 3 and sum(run["buckets"]) == 3
    assert snap["histograms"][("queue_wait", "add_algo")]["count"] == 3
    assert snap["retries"] == {"add_algo": 1}
    assert snap["attempts"] == {
        ("add_algo", "retrying"): 1,
        ("add_algo", "succeeded"): 1,
        ("add_algo", "failed"): 2,
    }

    # When nothing finished since, a fold adds nothing
    assert ledger.fold() == 0
    assert ledger.snapshot() == snap

    # And the totals outlive the records
    store.purge()
    assert ledger.snapshot() == snap


def test_ledger_leaves_recent_runs_for_later(store: StatusStore):
    envelope = {"id": "d" * 32, "operation": "add_dataset", "payload": {}, "references": []}
    store.create(envelope)
    _run(store, envelope["id"], ["succeeded"], JobState.SUCCEEDED, [0.0])
    ledger = LatencyLedger(store, grace=60.0)
    assert ledger.fold() == 0
    assert ledger.fold(now=time.time() + 120) == 1


def test_watcher_backlog_and_lag(idle_api: ApiClient, idle_settings: Settings, tmp_path: Path):
    # Given a watch root with a folder waiting for 40 s, one queued, one registered
    import redis

    client = redis.Redis.from_url(idle_settings.redis_url, decode_responses=True)
    state = WatchState(client, tmp_path / "watch_dirs")
    state.register_root()
    now = time.time()
    state.save_folders(
        [
            FolderRecord(
                "c/a", "c", "a", str(tmp_path / "a"), status="waiting", first_seen=now - 40
            ),
            FolderRecord("c/b", "c", "b", str(tmp_path / "b"), status="queued", first_seen=now - 5),
            FolderRecord(
                "c/z", "c", "z", str(tmp_path / "z"), status="registered", first_seen=now - 900
            ),
        ]
    )
    client.close()

    samples = scrape(idle_api)
    root = str(state.root)
    assert value(samples, "substra_worker_watch_backlog", root=root) == 2
    assert value(samples, "substra_worker_watch_folders", root=root, status="registered") == 1
    assert value(samples, "substra_worker_watch_folders", root=root, status="waiting") == 1
    lag = value(samples, "substra_worker_watch_lag_seconds", root=root)
    assert 40 <= lag < 60


def test_ledger_folds_a_long_backlog_over_several_scrapes(store: StatusStore, monkeypatch):
    from substra_worker.api import latency

    monkeypatch.setattr(latency, "MAX_FOLD", 2)
    for i in range(5):
        envelope = {"id": f"{i:032x}", "operation": "add_algo", "payload": {}, "references": []}
        store.create(envelope)
        _run(store, envelope["id"], ["succeeded"], JobState.SUCCEEDED, [0.0])
    ledger = LatencyLedger(store, grace=0.0)
    assert [ledger.fold(), ledger.fold(), ledger.fold(), ledger.fold()] == [2, 2, 1, 0]
    assert ledger.snapshot()["histograms"][("run", "add_algo")]["count"] == 5
