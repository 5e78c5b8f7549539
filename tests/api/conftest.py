"""Fixtures of the API tests: real Redis, node, Celery worker and API server over HTTP.

Two Redis databases of one server: database 0 has a worker consuming it (the
``api`` fixture), database 1 has none (``idle_api``), so jobs submitted there
stay queued and health checks there find no worker.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from substra_worker.api.app import ApiServer
from substra_worker.redis_server import BundledRedis
from substra_worker.settings import Settings
from tests.api.stack import ApiClient, api_settings, flush
from tests.support.node_process import NodeProcess, start_node
from tests.support.stack import WorkerProcess, worker_env

_variants = itertools.count(1000)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BundledRedis]:
    server = BundledRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = start_node(tmp_path_factory.mktemp("node"))
    yield process
    process.stop()


@pytest.fixture(scope="session")
def settings(redis_server: BundledRedis, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    url = redis_server.url  # database 0
    flush(url)
    return api_settings(url, tmp_path_factory.mktemp("state"), api_health_timeout=2.0)


@pytest.fixture(scope="session")
def worker(
    settings: Settings, node: NodeProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = WorkerProcess(worker_env(settings, node), log, concurrency=2).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def api_server(settings: Settings, worker: WorkerProcess) -> Iterator[ApiServer]:
    server = ApiServer(settings).start()
    yield server
    server.stop()


@pytest.fixture
def api(api_server: ApiServer) -> ApiClient:
    """The API over database 0, where a worker consumes jobs for the embedded node."""
    return ApiClient(api_server)


@pytest.fixture
def idle_settings(redis_server: BundledRedis, tmp_path: Path) -> Settings:
    url = redis_server.url.rsplit("/", 1)[0] + "/1"
    flush(url)
    return api_settings(url, tmp_path / "state", api_health_timeout=0.5)


@pytest.fixture
def idle_api(idle_settings: Settings) -> Iterator[ApiClient]:
    """The API over database 1, which no worker consumes: jobs stay queued."""
    server = ApiServer(idle_settings).start()
    yield ApiClient(server)
    server.stop()


@pytest.fixture
def variant() -> int:
    """A number no other test of the session uses: distinct asset contents and keys."""
    return next(_variants)
