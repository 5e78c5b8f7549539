"""/healthz: healthy only when a worker consumes a canary sent through the broker."""

from __future__ import annotations

import os
import signal
import time

import redis

from substra_worker.settings import Settings
from substra_worker.tasks.app import QUEUE
from tests.api.stack import ApiClient


def test_healthy_when_a_worker_consumes(api: ApiClient):
    response = api.get("/healthz", token=None)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert 0 <= body["round_trip"] < 5
    # each probe sends a fresh canary and leaves nothing behind
    again = api.get("/healthz", token=None).json()
    assert again["status"] == "ok"
    client = redis.Redis.from_url(api.server.app.settings.redis_url, decode_responses=True)
    try:
        assert not client.exists("sw:api:canary")
        assert not list(client.scan_iter("celery-task-meta-canary-*"))
    finally:
        client.close()


def test_unhealthy_without_a_consuming_worker(idle_api: ApiClient, idle_settings: Settings):
    # Given no worker on this database
    first = idle_api.get("/healthz", token=None)
    second = idle_api.get("/healthz", token=None)

    # Then the probe says why, in JSON
    assert first.status_code == 503
    body = second.json()
    assert body["status"] == "unavailable"
    assert "no worker consumed the canary" in body["message"]
    assert body["queue_depth"] == 1

    # And repeated probes keep a single canary in flight
    client = redis.Redis.from_url(idle_settings.redis_url, decode_responses=True)
    try:
        assert client.llen(QUEUE) == 1
    finally:
        client.close()


def test_unhealthy_when_redis_is_unreachable(idle_settings: Settings):
    from substra_worker.api.app import ApiServer
    from substra_worker.redis_server import free_port

    server = ApiServer(
        idle_settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    ).start()
    try:
        response = ApiClient(server).get("/healthz", token=None)
        assert response.status_code == 503
        assert "Redis unreachable" in response.json()["message"]
    finally:
        server.stop()


def test_unhealthy_while_the_worker_process_exists_but_is_stopped(api: ApiClient, worker):
    # Given the worker's processes all exist but are stopped (SIGSTOP)
    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        response = api.get("/healthz", token=None)
        # Then the probe is unhealthy: processes are not enough
        assert response.status_code == 503, response.text
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)
    # And healthy again once the worker consumes
    deadline = time.monotonic() + 30
    while api.get("/healthz", token=None).status_code != 200:
        assert time.monotonic() < deadline, "worker did not come back"
        time.sleep(0.2)
