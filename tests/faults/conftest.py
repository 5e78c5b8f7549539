"""Fixtures of the fault scenarios: a Redis, a node, workers and a fault proxy, all real.

Every scenario gets its own bundled Redis (append-only, in its tmp folder) and
its own node process, so stopping or killing one never touches another test.
Retry settings are short (see ``FAST``) so that a scenario takes seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from substra_worker.redis_server import BundledRedis
from substra_worker.settings import Settings
from substra_worker.submitter import Submitter
from tests.faults.proxy import FaultProxy
from tests.support.node_process import NodeProcess, start_node
from tests.support.stack import WorkerProcess, worker_env

# quick retries, so that fault scenarios take seconds (environment of the workers too)
FAST: dict[str, object] = {
    "retry_backoff": 0.2,  # seconds: first retry delay
    "retry_backoff_max": 1.0,  # seconds: cap of one retry delay
    "task_max_retries": 40,  # enough to outlast every outage of these scenarios
    "retry_timeout": 1,  # seconds: the client's own 408/5xx budget inside one attempt
    "request_timeout": 10.0,  # seconds: socket timeout of one request
    "batch_size": 2,  # bulk uploads go in several batches, so resuming is exercised
    "reference_poll_interval": 0.2,
    # a killed worker's messages come back after 8s (longer than any attempt here)
    "visibility_timeout": 8,
    "task_soft_time_limit": 60,
    "task_time_limit": 70,
}
NODE_ENV = {"SUBSTRA_WORKER_NODE_CONCURRENCY": "1"}  # tuples run one at a time: 2 cores


@pytest.fixture
def bundled_redis(tmp_path: Path) -> Iterator[BundledRedis]:
    """A Redis of this test only, append-only, so it can be stopped and restarted."""
    server = BundledRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(bundled_redis: BundledRedis, tmp_path: Path) -> Settings:
    return Settings(redis_url=bundled_redis.url, state_dir=tmp_path / "state", **FAST)


@pytest.fixture
def submitter(settings: Settings) -> Iterator[Submitter]:
    s = Submitter(settings)
    yield s
    s.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    process = start_node(tmp_path / "node", env=NODE_ENV)
    yield process
    process.stop()


@pytest.fixture
def proxy_for() -> Iterator[Callable[[NodeProcess], FaultProxy]]:
    """``proxy_for(node)`` -> a FaultProxy in front of it (closed at the end)."""
    proxies: list[FaultProxy] = []

    def make(node: NodeProcess) -> FaultProxy:
        proxy = FaultProxy(node.url)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


class Target:
    """What a worker is pointed at: a URL (the node's, or a proxy's) and the node's token."""

    def __init__(self, url: str, token: str):
        self.url = url
        self.token = token


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``start_worker(settings, target, concurrency=2, env=None, **overrides)`` -> a worker.

    ``overrides`` are settings (``SUBSTRA_WORKER_*``); ``env`` other variables.
    """
    workers: list[WorkerProcess] = []

    def start(
        settings: Settings,
        target: object,
        *,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        **extra: object,
    ) -> WorkerProcess:
        full_env = worker_env(settings, target, **{**FAST, **extra})  # type: ignore[arg-type]
        full_env.update(env or {})
        worker = WorkerProcess(full_env, tmp_path / f"worker-{len(workers)}.log", concurrency)
        workers.append(worker)
        return worker.start(timeout=60)

    yield start
    for worker in workers:
        worker.stop()
