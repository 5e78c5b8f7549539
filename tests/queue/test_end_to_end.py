"""Every operation end to end: Submitter -> Redis -> a real Celery worker -> the node over HTTP."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from substra_worker import Client
from substra_worker.jobs import Job, JobFailed, JobState
from substra_worker.tasks.effects import STAMP
from tests.assets import (
    METRICS_NAME,
    description_path,
    make_algo_archive,
    make_sample_folders,
    metrics_archive,
    opener_path,
)
from tests.support.stack import redis_dump

PUBLIC = {"public": True, "authorized_ids": []}
NODE_ID = "MyOrg1MSP"


def algo_data(kind: str, tmp: Path, **extra) -> dict:
    return {
        "name": kind,
        "file": str(make_algo_archive(kind, tmp / "archives", **extra)),
        "description": str(description_path(f"# {kind}\n")),
        "permissions": PUBLIC,
    }


def wait_all(jobs: dict[str, Job], timeout: float = 120) -> None:
    failures = {}
    for name, job in jobs.items():
        try:
            job.wait(timeout=timeout)
        except JobFailed as e:
            failures[name] = str(e)
    assert not failures, failures


@pytest.mark.timeout(240)
def test_a_whole_chain_submitted_at_once_completes(
    settings, submitter, node, start_worker, rclient, tmp_path
):
    worker = start_worker(settings, node)
    client = Client(url=node.url, token=node.token)
    train_folders = [str(p) for p in make_sample_folders(tmp_path / "train", 5, prefix="chain")]
    test_folder = str(make_sample_folders(tmp_path / "test", 1, test=True, prefix="chain")[0])
    downloads = tmp_path / "downloads"

    # Given a whole chain submitted in one go, each step referring to the jobs it needs
    jobs: dict[str, Job] = {}
    s = submitter
    jobs["dataset"] = ds = s.add_dataset(
        {
            "name": "numbers",
            "type": "csv",
            "data_opener": str(opener_path()),
            "description": str(description_path("# numbers\n")),
            "permissions": PUBLIC,
        }
    )
    jobs["train"] = train = s.add_data_samples(
        {"paths": train_folders, "data_manager_keys": [ds], "test_only": False}
    )
    jobs["test"] = test = s.add_data_sample(
        {"path": test_folder, "data_manager_keys": [ds.ref()], "test_only": True}
    )
    jobs["objective"] = obj = s.add_objective(
        {
            "name": "mse",
            "description": str(description_path("# mse objective\n")),
            "metrics_name": METRICS_NAME,
            "metrics": str(metrics_archive(tmp_path / "archives")),
            "test_data_manager_key": ds,
            "test_data_sample_keys": [test],
            "permissions": PUBLIC,
        }
    )
    jobs["algo"] = algo = s.add_algo(algo_data("algo", tmp_path))
    aggregate_data = algo_data("aggregate_algo", tmp_path)
    aggregate_data["permissions"] = {"public": True, "authorizedIDs": []}
    jobs["aggregate_algo"] = agg = s.add_aggregate_algo(aggregate_data)
    jobs["composite_algo"] = comp = s.add_composite_algo(algo_data("composite_algo", tmp_path))
    jobs["traintuple"] = tt = s.add_traintuple(
        {"algo_key": algo, "data_manager_key": ds, "train_data_sample_keys": [train]},
        follow=True,
    )
    jobs["composite_traintuple"] = s.add_composite_traintuple(
        {
            "algo_key": comp,
            "data_manager_key": ds,
            "train_data_sample_keys": [train.ref("keys.0"), train.ref("keys.1")],
            "out_trunk_model_permissions": {"authorized_ids": []},
        }
    )
    jobs["aggregatetuple"] = s.add_aggregatetuple(
        {"algo_key": agg, "in_models_keys": [tt], "worker": NODE_ID}
    )
    jobs["testtuple"] = s.add_testtuple({"objective_key": obj, "traintuple_key": tt})
    plan_tuple = {"algo_key": algo, "data_manager_key": ds, "train_data_sample_keys": [train]}
    jobs["compute_plan"] = plan = s.add_compute_plan(
        {
            "traintuples": [
                {"traintuple_id": "t1", **plan_tuple},
                {"traintuple_id": "t2", **plan_tuple, "in_models_ids": ["t1"]},
            ],
            "testtuples": [{"objective_key": obj, "traintuple_id": "t2"}],
            "tag": "chain",
            "metadata": {"owner": "tests"},
        },
        follow=True,
    )
    jobs["update"] = update = s.update_compute_plan(
        plan.ref(),
        {"traintuples": [{"traintuple_id": "t3", **plan_tuple, "in_models_ids": ["t2"]}]},
        follow=True,
    )
    sleeper = algo_data("sleeping_algo", tmp_path, sleep=60)
    jobs["sleeping_algo"] = slow_algo = s.add_algo(sleeper)
    jobs["doomed_plan"] = doomed = s.add_compute_plan(
        {
            "traintuples": [
                {
                    "traintuple_id": "slow",
                    "algo_key": slow_algo,
                    "data_manager_key": ds,
                    "train_data_sample_keys": [train.ref("keys.4")],
                }
            ]
        }
    )
    jobs["cancel"] = s.cancel_compute_plan(doomed.ref())
    jobs["other_dataset"] = other = s.add_dataset(
        {
            "name": "numbers bis",
            "type": "csv",
            "data_opener": str(opener_path(tmp_path, variant=1)),
            "description": str(description_path("# numbers bis\n")),
            "permissions": PUBLIC,
        }
    )
    jobs["link_objective"] = s.link_dataset_with_objective(other, obj)
    jobs["link_samples"] = s.link_dataset_with_data_samples(other, [train])
    jobs["download_dataset"] = s.download_dataset(ds, downloads / "dataset")
    jobs["download_algo"] = s.download_algo(algo, downloads / "algo")
    jobs["download_aggregate_algo"] = s.download_aggregate_algo(agg, downloads / "aggregate")
    jobs["download_composite_algo"] = s.download_composite_algo(comp, downloads / "composite")
    jobs["download_objective"] = s.download_objective(obj, downloads / "objective")

    # Then the jobs that depend on others wait, without messages
    assert train.state is JobState.WAITING and tt.state is JobState.WAITING
    assert ds.state is JobState.QUEUED

    # When the worker runs them all
    wait_all(jobs)

    # Then every operation had its effect on the node, once
    dataset = client.get_dataset(ds.refresh().key)
    assert len(train.refresh().keys) == 5
    assert sorted(dataset["trainDataSampleKeys"]) == sorted(train.keys)
    assert dataset["testDataSampleKeys"] == [test.refresh().key]
    assert dataset["objectiveKey"] == obj.refresh().key
    assert train.progress == {"done": 5, "total": 5}
    assert len(client.list_data_sample()) == 6
    other_dataset = client.get_dataset(other.refresh().key)
    assert other_dataset["objectiveKey"] == obj.key
    assert sorted(other_dataset["trainDataSampleKeys"]) == sorted(train.keys)

    # the followed traintuple and plan are tracked until done
    assert tt.wait(timeout=60, follow=True)["key"] == tt.key
    assert tt.refresh().progress["status"] == "done"
    update.wait(timeout=90, follow=True)
    progress = update.refresh().progress
    assert progress["status"] == "done" and progress["done"] == progress["total"] == 4
    cp = client.get_compute_plan(plan.refresh().key)
    assert cp["metadata"][STAMP] == plan.id and cp["metadata"]["owner"] == "tests"
    assert set(plan.result["id_to_key"]) == {"t1", "t2"}
    assert client.get_traintuple(cp["IDToKey"]["t3"])["metadata"][STAMP] == update.id
    assert client.get_compute_plan(doomed.refresh().key)["status"] == "canceled"

    # downloads landed whole, under their reference names
    assert (downloads / "dataset" / "opener.py").read_bytes() == opener_path().read_bytes()
    for folder, name in [
        ("algo", "algo.tar.gz"),
        ("aggregate", "aggregate_algo.tar.gz"),
        ("composite", "composite_algo.tar.gz"),
        ("objective", "metrics.zip"),
    ]:
        assert (downloads / folder / name).stat().st_size > 0
        assert [p.name for p in (downloads / folder).iterdir()] == [name]

    # and no secret reached Redis or the worker's log
    assert node.token not in redis_dump(rclient)
    assert node.token not in worker.log_text()


def test_a_permanent_error_is_recorded_then_retried(
    settings, submitter, node, start_worker, tmp_path
):
    start_worker(settings, node)
    client = Client(url=node.url, token=node.token)
    opener = opener_path(tmp_path, variant=7)
    dataset_data = {
        "name": "late",
        "type": "csv",
        "data_opener": str(opener),
        "description": str(description_path("# late dataset\n")),
        "permissions": PUBLIC,
    }
    dataset_key = hashlib.sha256(opener.read_bytes()).hexdigest()  # the node's key rule
    folder = str(make_sample_folders(tmp_path / "s", 1, prefix="late")[0])

    # Given a sample for a dataset the node does not know yet
    job = submitter.add_data_sample({"path": folder, "data_manager_keys": [dataset_key]})

    # Then the job fails at once (no retries), with the node's message
    with pytest.raises(JobFailed):
        job.wait(timeout=30)
    job.refresh()
    assert job.state is JobState.FAILED
    assert job.error["retryable"] is False
    assert job.error["type"] in ("InvalidRequest", "NotFound")
    assert dataset_key in job.error["message"] or "data" in job.error["message"].lower()
    assert [a["outcome"] for a in job.attempts] == ["failed"]

    # When the dataset exists and the job is retried
    client.add_dataset(dataset_data)
    retried = submitter.retry(job.id)
    assert retried.state is JobState.QUEUED and retried.error is None

    # Then it succeeds, and its history shows both attempts
    result = retried.wait(timeout=30)
    assert result["key"]
    assert [a["outcome"] for a in retried.refresh().attempts] == ["failed", "succeeded"]
    assert [h["state"] for h in retried.history] == [
        "queued",
        "running",
        "failed",
        "queued",
        "running",
        "succeeded",
    ]


def test_a_conflict_the_job_did_not_cause_fails_it(
    settings, submitter, node, start_worker, tmp_path
):
    start_worker(settings, node)
    client = Client(url=node.url, token=node.token)
    data = algo_data("algo", tmp_path, variant=11)
    existing = client.add_algo(data)

    job = submitter.add_algo(data)  # exist_ok=False, as the Client's default
    with pytest.raises(JobFailed):
        job.wait(timeout=30)
    assert job.refresh().error["type"] == "AlreadyExists"
    assert existing["key"] in job.error["message"]

    # with exist_ok the existing asset is the job's result
    assert submitter.add_algo(data, exist_ok=True).wait(timeout=30)["key"] == existing["key"]


def test_substra_worker_worker_runs_jobs(settings, submitter, node, start_worker, tmp_path):
    worker = start_worker(settings, node, concurrency=1, cli=True)
    data = algo_data("composite_algo", tmp_path, variant=12)
    job = submitter.add_composite_algo(data)
    assert job.wait(timeout=30)["key"]
    assert "concurrency: 1 (prefork)" in worker.log_text()


def test_a_job_whose_message_was_lost_is_sent_again(
    settings, submitter, node, start_worker, rclient, tmp_path
):
    from substra_worker.tasks.app import QUEUE
    from substra_worker.tasks.recovery import live_job_ids, recover

    # Given a recorded job whose message Redis lost (and one whose message is fine)
    lost = submitter.add_algo(algo_data("algo", tmp_path, variant=13))
    rclient.delete(QUEUE)
    kept = submitter.add_algo(algo_data("algo", tmp_path, variant=14))
    assert live_job_ids(rclient) == {kept.id}

    # When the sweep runs (a worker runs it at start-up for jobs unchanged for a minute)
    assert recover(submitter.store, submitter._send, older_than=0) == [lost.id]
    assert live_job_ids(rclient) == {kept.id, lost.id}
    start_worker(settings, node)

    # Then both run, once each
    assert lost.wait(timeout=30)["key"] and kept.wait(timeout=30)["key"]
    assert [a["outcome"] for a in lost.refresh().attempts] == ["succeeded"]
    assert "sent again" in lost.history[1]["message"]


def test_a_target_profile_is_resolved_by_the_worker_from_its_own_files(
    settings, submitter, node, start_worker, rclient, tmp_path
):
    # Given a worker whose default node is unreachable, and whose profile files name the node
    config = tmp_path / "substra.json"
    tokens = tmp_path / "substra-tokens.json"
    config.write_text(json.dumps({"other": {"url": node.url, "version": "0.0"}}))
    tokens.write_text(json.dumps({"other": {"token": node.token}}))
    dead = type("DeadNode", (), {"url": "http://127.0.0.1:9", "token": "unused-token"})()
    start_worker(settings, dead, config_path=str(config), tokens_path=str(tokens))

    # When jobs name that profile (never a URL or a token)
    job = submitter.add_algo(algo_data("algo", tmp_path, variant=15), target="other")
    unknown = submitter.add_algo(algo_data("algo", tmp_path, variant=16), target="nowhere")

    # Then the worker calls the profile's node with the profile's token
    assert job.wait(timeout=30)["key"]
    with pytest.raises(JobFailed):
        unknown.wait(timeout=30)
    assert unknown.refresh().error["type"] == "ConfigurationError"
    assert node.token not in redis_dump(rclient)
