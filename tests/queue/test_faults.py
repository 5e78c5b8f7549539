"""Faults a real deployment meets: the node down for a while, a worker killed mid-job."""

from __future__ import annotations

import time

import pytest
import redis

from substra_worker import Client
from substra_worker.jobs import JobFailed, JobState
from substra_worker.redis_server import BundledRedis
from substra_worker.settings import Settings
from substra_worker.submitter import Submitter
from substra_worker.tasks.effects import STAMP
from tests.assets import description_path, make_sample_folders, opener_path
from tests.queue.holding_proxy import HoldingProxy
from tests.queue.test_end_to_end import PUBLIC, algo_data
from tests.support.node_process import start_node
from tests.support.stack import FAST, redis_dump


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def dataset_data(tmp_path, variant: int) -> dict:
    return {
        "name": f"dataset {variant}",
        "type": "csv",
        "data_opener": str(opener_path(tmp_path, variant=variant)),
        "description": str(description_path(f"# dataset {variant}\n")),
        "permissions": PUBLIC,
    }


@pytest.mark.timeout(120)
def test_jobs_retry_while_the_node_is_down_and_succeed_once_it_is_back(
    settings, submitter, start_worker, rclient, tmp_path
):
    node = start_node(tmp_path / "node")
    try:
        start_worker(settings, node)
        client = Client(url=node.url, token=node.token)
        folders = [str(p) for p in make_sample_folders(tmp_path / "s", 3, prefix="down")]

        # Given the node is down when jobs arrive
        node.stop()
        dataset = submitter.add_dataset(dataset_data(tmp_path, 21))
        algo = submitter.add_algo(algo_data("algo", tmp_path, variant=21))
        samples = submitter.add_data_samples({"paths": folders, "data_manager_keys": [dataset]})

        # Then the jobs that can run are retrying, and the one that waits on them waits
        for job in (dataset, algo):
            wait_for(lambda j=job: j.refresh().state is JobState.RETRYING, 30, "retrying")
        wait_for(lambda: len(dataset.refresh().attempts) >= 3, 30, "several attempts")
        assert samples.refresh().state is JobState.WAITING
        assert dataset.error["type"] == "ConnectionError" and dataset.error["retryable"]
        assert dataset.attempts[0]["outcome"] == "retrying"

        # When the node comes back (same port, same state)
        node.start()

        # Then every job succeeds, and each asset exists once
        for job in (dataset, algo, samples):
            job.wait(timeout=60)
        assert [d["key"] for d in client.list_dataset()] == [dataset.refresh().key]
        assert len(client.list_algo()) == 1
        assert len(samples.refresh().keys) == 3
        assert node.token not in redis_dump(rclient)
    finally:
        node.stop()


@pytest.mark.timeout(150)
def test_a_worker_killed_mid_job_is_redelivered_and_does_it_once(
    settings, submitter, node, start_worker, rclient, tmp_path
):
    # A real HTTP hop that can hold the node's answers back, and a short visibility timeout
    proxy = HoldingProxy(node.url)
    proxy_node = type("ProxiedNode", (), {"url": proxy.url, "token": node.token})()
    fast = {"visibility_timeout": 5, "task_time_limit": 60, "task_soft_time_limit": 55}
    client = Client(url=node.url, token=node.token)
    try:
        worker = start_worker(settings, proxy_node, **fast)
        dataset = client.add_dataset(dataset_data(tmp_path, 31))
        folder = str(make_sample_folders(tmp_path / "s", 1, prefix="kill")[0])
        sample = client.add_data_sample({"path": folder, "data_manager_keys": [dataset["key"]]})

        # Given jobs whose requests reach the node but whose answers are held back
        proxy.hold.set()
        algo = submitter.add_algo(algo_data("algo", tmp_path, variant=31))
        plan = submitter.add_compute_plan(
            {
                "traintuples": [
                    {
                        "traintuple_id": "only",
                        "algo_key": client.add_algo(algo_data("algo", tmp_path, variant=32))["key"],
                        "data_manager_key": dataset["key"],
                        "train_data_sample_keys": [sample["pkhash"]],
                    }
                ],
                "tag": "killed-worker",
            }
        )
        wait_for(lambda: len(client.list_algo()) == 2, 30, "the algo created on the node")
        wait_for(lambda: len(client.list_compute_plan()) == 1, 30, "the plan created")
        assert algo.refresh().state is JobState.RUNNING
        assert plan.refresh().state is JobState.RUNNING

        # When the worker is killed (SIGKILL, pool included) before it could record anything
        worker.kill()
        proxy.hold.clear()
        start_worker(settings, proxy_node, **fast)

        # Then both jobs are delivered again and succeed...
        algo_result = algo.wait(timeout=60)
        plan_result = plan.wait(timeout=60)
        # ...with the assets the lost attempts made, not second ones
        plans = client.list_compute_plan()
        assert len(plans) == 1 and plans[0]["metadata"][STAMP] == plan.id
        assert plan_result["key"] == plans[0]["computePlanID"]
        assert algo_result["key"] in {a["key"] for a in client.list_algo()}
        assert len(client.list_algo()) == 2
        for job in (algo, plan):
            outcomes = [a["outcome"] for a in job.refresh().attempts]
            assert outcomes == ["lost", "succeeded"], outcomes
            assert job.attempts[0]["error_class"] == "WorkerLost"
        assert node.token not in redis_dump(rclient)
    finally:
        proxy.close()


@pytest.mark.timeout(60)
def test_a_redis_password_works_and_stays_out_of_logs_and_records(node, start_worker, tmp_path):
    password = "s3cret-redis-pass"
    server = BundledRedis(tmp_path / "redis", password=password)
    url = server.start()
    try:
        settings = Settings(redis_url=url, state_dir=tmp_path / "state", **FAST)
        worker = start_worker(settings, node)
        with Submitter(settings) as submitter:
            job = submitter.add_dataset(dataset_data(tmp_path, 41), exist_ok=True)
            assert job.wait(timeout=30)["key"]
        client = redis.Redis.from_url(url, decode_responses=True)
        dump = redis_dump(client)
        client.close()
        assert password not in dump and node.token not in dump
        log = worker.log_text()
        assert password not in log and node.token not in log
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_a_job_that_outlives_its_time_limit_fails_instead_of_hanging(
    settings, submitter, node, start_worker, tmp_path
):
    proxy = HoldingProxy(node.url)
    proxy_node = type("ProxiedNode", (), {"url": proxy.url, "token": node.token})()
    try:
        start_worker(
            settings, proxy_node, task_soft_time_limit=2, task_time_limit=4, request_timeout=30
        )
        proxy.hold.set()  # the node never seems to answer
        job = submitter.add_dataset(dataset_data(tmp_path, 51))
        with pytest.raises(JobFailed):
            job.wait(timeout=30)
        job.refresh()
        assert job.error["type"] == "SoftTimeLimitExceeded"
        assert "time limit" in job.error["message"]
        assert [a["outcome"] for a in job.attempts] == ["failed"]
    finally:
        proxy.close()


@pytest.mark.timeout(60)
def test_a_job_killed_by_the_hard_time_limit_is_recorded_failed(
    settings, submitter, node, start_worker, tmp_path
):
    proxy = HoldingProxy(node.url)
    proxy_node = type("ProxiedNode", (), {"url": proxy.url, "token": node.token})()
    try:
        # no soft limit before the hard one: the pool process is killed mid-request
        start_worker(
            settings, proxy_node, task_soft_time_limit=0, task_time_limit=2, request_timeout=30
        )
        proxy.hold.set()
        job = submitter.add_dataset(dataset_data(tmp_path, 61))
        with pytest.raises(JobFailed):
            job.wait(timeout=30)
        job.refresh()
        assert job.error["type"] == "TimeLimitExceeded"
        assert [a["outcome"] for a in job.attempts] == ["failed"]
    finally:
        proxy.close()
