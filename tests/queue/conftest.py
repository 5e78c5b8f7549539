"""Fixtures of the queue tests: a real Redis, real Celery workers, the embedded node over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from substra_worker.redis_server import BundledRedis
from substra_worker.settings import Settings
from substra_worker.status_store import StatusStore
from substra_worker.submitter import Submitter
from tests.support.node_process import NodeProcess, start_node
from tests.support.stack import FAST, WorkerProcess, worker_env


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BundledRedis]:
    server = BundledRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: BundledRedis) -> Iterator[str]:
    """The session's Redis, emptied of jobs and messages before the test."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = [k for k in client.keys("*") if not k.startswith("_kombu.binding")]
    if keys:
        client.delete(*keys)
    client.close()
    yield redis_server.url


@pytest.fixture
def rclient(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(redis_url=redis_url, state_dir=tmp_path / "state", **FAST)


@pytest.fixture
def store(settings: Settings) -> Iterator[StatusStore]:
    s = StatusStore.from_settings(settings)
    yield s
    s.close()


@pytest.fixture
def submitter(settings: Settings) -> Iterator[Submitter]:
    s = Submitter(settings)
    yield s
    s.close()


# --- the node --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = start_node(tmp_path_factory.mktemp("node"))
    yield process
    process.stop()


# --- workers ---------------------------------------------------------------------------


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    """``start_worker(settings, node, **settings_overrides)`` -> a running WorkerProcess."""
    workers: list[WorkerProcess] = []

    def start(
        settings: Settings,
        node: NodeProcess | None,
        *,
        concurrency: int = 2,
        cli: bool = False,
        **extra: object,
    ) -> WorkerProcess:
        env = worker_env(settings, node, **extra)
        log = tmp_path / f"worker-{len(workers)}.log"
        worker = WorkerProcess(env, log, concurrency, cli=cli)
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()
