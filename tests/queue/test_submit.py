"""Submitting jobs against a real Redis, no worker: validation, records, messages, references."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from substra_worker import references
from substra_worker.jobs import JobNotFound, JobState, JobStateError
from substra_worker.sdk.exceptions import InvalidInput
from substra_worker.submitter import Submitter
from substra_worker.tasks.app import QUEUE
from tests.assets import description_path, make_algo_archive, make_sample_folders, opener_path

KEY = "a" * 64
KEY2 = "b" * 64


def stored_keys(rclient) -> list[str]:
    """Every key but the broker's queue bindings (which exist before any job)."""
    return sorted(k for k in rclient.keys("*") if not k.startswith("_kombu.binding"))


def messages(rclient) -> list[dict]:
    """The job messages waiting in the queue, oldest first, bodies decoded."""
    out = []
    for raw in reversed(rclient.lrange(QUEUE, 0, -1)):
        message = json.loads(raw)
        message["decoded"] = json.loads(base64.b64decode(message["body"]))
        out.append(message)
    return out


def dataset_data(**extra) -> dict:
    return {
        "name": "numbers",
        "type": "csv",
        "data_opener": str(opener_path()),
        "description": str(description_path()),
        "permissions": {"public": True, "authorized_ids": []},
        **extra,
    }


def make_result(store, key: str, keys: list[str] | None = None) -> dict:
    return store.bounded_result(key, {"key": key})


# --- refused at submit, nothing recorded ------------------------------------------------------


def _invalid_cases(tmp: Path) -> list[tuple[str, dict, dict, str]]:
    samples = [str(p) for p in make_sample_folders(tmp / "samples", 2)]
    archive = str(make_algo_archive("algo", tmp))
    algo = {
        "name": "a",
        "file": archive,
        "description": str(description_path()),
        "permissions": {"public": True, "authorized_ids": []},
    }
    return [
        (
            "add_dataset",
            {k: v for k, v in dataset_data().items() if k != "name"},
            {},
            "payload.name",
        ),
        ("add_dataset", dataset_data(data_opener=str(tmp / "nope.py")), {}, "payload.data_opener"),
        ("add_algo", {**algo, "token": "x"}, {}, "payload.token"),
        ("add_algo", {**algo, "file": str(tmp / "missing.tar.gz")}, {}, "payload.file"),
        (
            "add_traintuple",
            {"algo_key": "not-a-key", "data_manager_key": KEY, "train_data_sample_keys": [KEY2]},
            {},
            "payload.algo_key",
        ),
        (
            "add_data_samples",
            {"paths": [*samples, str(tmp / "typo")], "data_manager_keys": [KEY]},
            {},
            "payload.paths",
        ),
        ("link_dataset_with_objective", {"dataset_key": KEY}, {}, "payload.objective_key"),
        ("cancel_compute_plan", {"compute_plan_id": "1234"}, {}, "payload.compute_plan_id"),
        ("download_algo", {"key": KEY}, {}, "payload.destination_folder"),
        (
            "add_data_sample",
            {"path": samples[0], "data_manager_keys": ["$job:xyz"]},
            {},
            "payload",
        ),
        (
            "add_data_sample",
            {"path": samples[0], "data_manager_keys": [references.make_ref("c" * 32)]},
            {},
            "references",
        ),
        ("add_dataset", dataset_data(), {"follow": True}, "follow"),
        ("add_dataset", dataset_data(), {"target": "http://node:8000/?token=x"}, "target"),
        ("no_such_operation", {}, {}, "operation"),
    ]


def test_invalid_jobs_are_refused_with_the_field_and_nothing_is_recorded(
    submitter: Submitter, rclient, tmp_path: Path
):
    # Given an empty Redis
    assert stored_keys(rclient) == []
    for operation, data, options, field in _invalid_cases(tmp_path):
        # When a bad job is submitted
        with pytest.raises(InvalidInput) as info:
            submitter.submit(operation, data, **options)
        # Then the error names the field...
        assert any(name == field or name.startswith(field + ".") for name in info.value.errors), (
            operation,
            field,
            info.value.errors,
        )
        # ...and nothing at all was written: no record, no index, no message
        assert stored_keys(rclient) == [], (operation, field)


def test_an_envelope_with_a_token_field_is_refused(submitter: Submitter, rclient):
    envelope = {"operation": "add_dataset", "payload": dataset_data(), "token": "secret-token"}
    with pytest.raises(InvalidInput) as info:
        submitter.submit_envelope(envelope)
    assert "token" in info.value.errors
    assert stored_keys(rclient) == []


# --- records and messages ---------------------------------------------------------------------


def test_the_record_exists_and_the_message_carries_only_the_job_id(submitter, rclient):
    job = submitter.add_dataset(dataset_data(), exist_ok=True)

    assert job.state is JobState.QUEUED
    assert job.operation == "add_dataset"
    assert [h["state"] for h in job.history] == ["queued"]
    assert job.envelope["options"]["exist_ok"] is True
    assert job.envelope["payload"]["data_opener"] == str(opener_path())
    (message,) = messages(rclient)
    args, kwargs, _ = message["decoded"]
    assert args == [job.id, 1] and kwargs == {}
    assert str(opener_path()) not in json.dumps(message)  # the payload stays in the record


def test_an_idempotency_key_returns_the_existing_job(submitter, settings, rclient):
    first = submitter.add_dataset(dataset_data(), idempotency_key="dataset-1")
    again = submitter.add_dataset(dataset_data(name="other"), idempotency_key="dataset-1")

    assert again.id == first.id
    assert again.envelope["payload"]["name"] == "numbers"
    assert len(messages(rclient)) == 1
    # the key is scoped to its producer
    with Submitter(settings, producer="someone-else") as other:
        assert other.add_dataset(dataset_data(), idempotency_key="dataset-1").id != first.id


def test_relative_paths_are_made_absolute_for_the_worker(submitter, tmp_path, monkeypatch):
    make_sample_folders(tmp_path / "in", 1, prefix="s")
    monkeypatch.chdir(tmp_path)
    job = submitter.add_data_sample({"path": "in/s0", "data_manager_keys": [KEY]})
    assert job.envelope["payload"]["path"] == str(tmp_path / "in" / "s0")
    server_side = submitter.add_data_sample(
        {"path": "/srv/data/s0", "data_manager_keys": [KEY]}, local=False
    )
    assert server_side.envelope["payload"]["path"] == "/srv/data/s0"


def test_download_destinations_are_confined_to_the_download_root(settings, tmp_path, rclient):
    root = tmp_path / "downloads"
    with Submitter(settings.replace(download_root=str(root))) as submitter:
        job = submitter.download_algo(KEY, "algos")
        assert job.envelope["options"]["destination"] == str(root / "algos")
        for escape in ("../outside", str(tmp_path / "elsewhere")):
            with pytest.raises(InvalidInput) as info:
                submitter.download_algo(KEY, escape)
            assert "options.destination" in info.value.errors
    assert len(messages(rclient)) == 1


def test_importing_the_client_does_not_import_celery():
    code = (
        "import sys, substra_worker\n"
        "from substra_worker import Client\n"
        "assert 'celery' not in sys.modules, 'celery imported'\n"
        "assert substra_worker.Submitter.__name__ == 'Submitter'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- references -----------------------------------------------------------------------------


def test_a_job_waits_for_its_references_without_a_message(submitter, store, rclient, tmp_path):
    # Given a dataset job and a samples job that refers to it (a Job object is a reference)
    folders = [str(p) for p in make_sample_folders(tmp_path / "s", 3)]
    dataset = submitter.add_dataset(dataset_data())
    samples = submitter.add_data_samples({"paths": folders, "data_manager_keys": [dataset]})

    # Then the samples job waits, with no message of its own
    assert samples.state is JobState.WAITING
    assert samples.references == [dataset.id]
    assert samples.envelope["payload"]["data_manager_keys"] == [f"$job:{dataset.id}"]
    assert [m["decoded"][0][0] for m in messages(rclient)] == [dataset.id]

    # When the dataset job succeeds (as a worker records it) and its waiters are released
    store.transition(dataset.id, JobState.SUCCEEDED, fields={"result": make_result(store, KEY)})
    references.release(store, dataset.id, submitter._send)

    # Then the samples job is queued and its message sent, once
    assert samples.refresh().state is JobState.QUEUED
    references.release(store, dataset.id, submitter._send)
    assert [m["decoded"][0][0] for m in messages(rclient)] == [dataset.id, samples.id]
    assert store.waiters(dataset.id) == set()


def test_a_reference_already_succeeded_queues_at_once(submitter, store, tmp_path):
    dataset = submitter.add_dataset(dataset_data())
    store.transition(dataset.id, JobState.SUCCEEDED, fields={"result": make_result(store, KEY)})
    folder = str(make_sample_folders(tmp_path / "s", 1)[0])
    job = submitter.add_data_sample({"path": folder, "data_manager_keys": [dataset.ref()]})
    assert job.state is JobState.QUEUED


def test_a_failed_reference_fails_its_waiters_in_cascade(submitter, store, tmp_path):
    folders = [str(p) for p in make_sample_folders(tmp_path / "s", 2)]
    dataset = submitter.add_dataset(dataset_data())
    samples = submitter.add_data_samples({"paths": folders, "data_manager_keys": [dataset]})
    train = submitter.add_traintuple(
        {"algo_key": KEY, "data_manager_key": dataset, "train_data_sample_keys": [samples]}
    )
    assert train.state is JobState.WAITING
    assert set(train.references) == {dataset.id, samples.id}

    store.transition(
        dataset.id,
        JobState.FAILED,
        fields={"error": {"type": "InvalidRequest", "message": "400: bad opener"}},
    )
    references.release(store, dataset.id, submitter._send)

    samples.refresh()
    assert samples.state is JobState.FAILED
    assert samples.error["reference"] == dataset.id
    assert dataset.id in samples.error["message"] and "bad opener" in samples.error["message"]
    train.refresh()
    assert train.state is JobState.FAILED
    assert train.error["reference"] in (dataset.id, samples.id)
    # a later job referring to the failed one fails at once, naming it
    late = submitter.add_data_samples({"paths": folders, "data_manager_keys": [dataset]})
    assert late.state is JobState.FAILED and dataset.id in late.error["message"]


def test_references_must_belong_to_the_same_producer(settings, submitter, tmp_path):
    dataset = submitter.add_dataset(dataset_data())
    folder = str(make_sample_folders(tmp_path / "s", 1)[0])
    with Submitter(settings, producer="intruder") as other, pytest.raises(InvalidInput) as info:
        other.add_data_sample({"path": folder, "data_manager_keys": [dataset]})
    assert "another producer" in info.value.errors["references"][0]


# --- cancel, retry, listing, retention ---------------------------------------------------------


def test_cancel_only_before_the_job_starts(submitter, store, tmp_path):
    dataset = submitter.add_dataset(dataset_data())
    folder = str(make_sample_folders(tmp_path / "s", 1)[0])
    sample = submitter.add_data_sample({"path": folder, "data_manager_keys": [dataset]})

    assert submitter.cancel(dataset.id).state is JobState.CANCELED
    # its waiter fails, naming it
    assert sample.refresh().state is JobState.FAILED
    assert "canceled" in sample.error["message"]

    running = submitter.add_dataset(dataset_data(name="x"))
    store.transition(running.id, JobState.RUNNING)
    with pytest.raises(JobStateError):
        submitter.cancel(running.id)
    with pytest.raises(JobStateError):
        submitter.retry(running.id)
    with pytest.raises(JobNotFound):
        submitter.get_job("0" * 32)


def test_list_stats_retention_and_purge(settings, rclient):
    with Submitter(settings.replace(result_ttl=50)) as submitter:
        store = submitter.store
        jobs = [submitter.add_dataset(dataset_data(name=f"d{i}")) for i in range(4)]
        sample_job = submitter.download_algo(KEY, str(settings.state_dir))
        store.transition(jobs[0].id, JobState.SUCCEEDED, fields={"result": make_result(store, KEY)})
        store.transition(
            jobs[1].id, JobState.FAILED, fields={"error": {"type": "X", "message": "m"}}
        )

        assert [j.id for j in submitter.list_jobs()] == [
            sample_job.id,
            *reversed([j.id for j in jobs]),
        ]
        assert [j.id for j in submitter.list_jobs(state="failed")] == [jobs[1].id]
        assert [
            j.id for j in submitter.list_jobs(state=JobState.QUEUED, operation="add_dataset")
        ] == [
            jobs[3].id,
            jobs[2].id,
        ]
        assert len(submitter.list_jobs(limit=2)) == 2
        assert [j.id for j in submitter.list_jobs(limit=2, offset=4)] == [jobs[0].id]
        stats = submitter.stats()
        assert stats["queued"] == 3 and stats["succeeded"] == 1 and stats["failed"] == 1
        by_op = submitter.stats(by_operation=True)["operations"]
        assert by_op["add_dataset"] == {"queued": 2, "succeeded": 1, "failed": 1}

        # finished jobs expire, failed jobs are kept
        assert 0 < rclient.ttl(store.job_key(jobs[0].id)) <= 50
        assert rclient.ttl(store.job_key(jobs[1].id)) == -1
        assert rclient.ttl(store.job_key(jobs[2].id)) == -1

        # purge deletes finished records only
        assert submitter.purge() == 2
        assert {j.id for j in submitter.list_jobs()} == {sample_job.id, jobs[2].id, jobs[3].id}
        assert submitter.stats()["failed"] == 0


def test_wait_times_out_on_a_job_nobody_runs(submitter):
    job = submitter.add_dataset(dataset_data())
    with pytest.raises(TimeoutError):
        job.wait(timeout=0.3)


def test_large_answers_are_not_kept_whole(settings):
    with Submitter(settings.replace(result_max_bytes=200)) as submitter:
        small = submitter.store.bounded_result(KEY, {"key": KEY})
        assert small == {"key": KEY, "answer": {"key": KEY}}
        big = submitter.store.bounded_result(KEY, {"log": "x" * 1000}, id_to_key={"t": KEY})
        assert big["key"] == KEY and big["truncated"] is True and big["answer"] is None
        assert big["id_to_key"] == {"t": KEY} and big["answer_bytes"] > 1000
        with pytest.raises(references.BadReference, match="truncated"):
            references.resolve({"k": references.make_ref("a" * 32, "answer.log")}, {"a" * 32: big})


def test_extra_references_are_waited_for_without_being_substituted(submitter):
    dataset = submitter.add_dataset(dataset_data())
    other = submitter.add_dataset(dataset_data(name="other"))
    link = submitter.link_dataset_with_objective(
        KEY, KEY2, references=[dataset, f"$job:{other.id}"]
    )
    assert link.state is JobState.WAITING
    assert link.references == [dataset.id, other.id]
    assert link.envelope["payload"] == {"dataset_key": KEY, "objective_key": KEY2}


def test_a_resubmission_sends_a_job_whose_producer_died_before_sending(
    submitter, settings, rclient, monkeypatch
):
    # Given a producer that recorded a job, then died before sending its message
    def die(*args, **kwargs):
        raise KeyboardInterrupt

    import importlib

    app_module = importlib.import_module("substra_worker.tasks.app")
    monkeypatch.setattr(app_module, "send_job", die)
    with pytest.raises(KeyboardInterrupt):
        submitter.add_dataset(dataset_data(), idempotency_key="dataset-1")
    assert len(messages(rclient)) == 0
    monkeypatch.undo()

    # When the same submission is made again
    with Submitter(settings) as again:
        job = again.add_dataset(dataset_data(), idempotency_key="dataset-1")
        # Then the existing job's message is sent, once
        assert job.state is JobState.QUEUED
        assert [m["decoded"][0][0] for m in messages(rclient)] == [job.id]
        assert again.add_dataset(dataset_data(), idempotency_key="dataset-1").id == job.id
    assert len(messages(rclient)) == 1
