"""Fixtures of the watcher tests.

Unit tests get a real Redis (the bundled redis-server) for the watcher's state.
End-to-end tests get the whole stack, shared by the module: Redis, the embedded
node as a real ``substra-worker node`` process over HTTP, and a real Celery
worker process. Tests share the stack but not their data: each one has its own
watch root and its own dataset, so nothing needs flushing between them (and
flushing would drop the broker's queue bindings under the running worker).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from substra_worker.redis_server import BundledRedis
from substra_worker.settings import Settings
from substra_worker.watcher.service import Watcher
from substra_worker.watcher.state import WatchState
from substra_worker.watcher.submit import JobGateway
from tests.support.node_process import NodeProcess, start_node

WORKER_START_TIMEOUT = 60.0  # seconds for the Celery worker to say it is ready


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[BundledRedis]:
    server = BundledRedis(tmp_path_factory.mktemp("watch-redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server) -> Iterator[redis.Redis]:
    """A Redis client on a clean database (for tests that run no worker)."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def wait_for(
    condition: Callable[[], object], timeout: float, interval: float = 0.1, what: str = ""
) -> object:
    """Poll ``condition`` until it returns a true value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


# --- the stack ---------------------------------------------------------------------------


@dataclass
class Stack:
    redis_url: str
    node: NodeProcess
    data_root: Path  # the node may read local=False samples below it
    worker: subprocess.Popen
    worker_log: Path

    def env(self) -> dict[str, str]:
        """Environment of a process of this stack (worker or watcher)."""
        env = dict(os.environ)
        env.update(
            SUBSTRA_WORKER_REDIS_URL=self.redis_url,
            SUBSTRA_WORKER_NODE_URL=self.node.url,
            SUBSTRA_WORKER_NODE_TOKEN=self.node.token,
        )
        return env

    def settings(self, **overrides: object) -> Settings:
        """Watcher settings on this stack, with the short timings of the tests."""
        values: dict[str, object] = dict(
            redis_url=self.redis_url,
            quiet_period=0.3,
            rescan_interval=2.0,
            batch_window=0.3,
            max_settle_wait=60.0,
            batch_size=50,
        )
        values.update(overrides)
        return Settings(**values)

    def client(self):
        from substra_worker import Client

        return Client(url=self.node.url, token=self.node.token)


def _start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "substra_worker.tasks",
        "worker",
        "--loglevel=INFO",
        "--concurrency=2",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        f"watch-tests-{os.getpid()}@%h",
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"worker exited:\n{log_path.read_text(errors='replace')}")
        return " ready." in log_path.read_text(errors="replace")

    wait_for(ready, WORKER_START_TIMEOUT, 0.2, "the Celery worker")
    return process


def _stop_process_group(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("watch-stack")
    data_root = base / "roots"
    data_root.mkdir()
    node = start_node(base / "node-state", users=("admin:admin",), data_roots=(data_root,))
    worker_env = dict(os.environ)
    worker_env.update(
        SUBSTRA_WORKER_REDIS_URL=redis_server.url,
        SUBSTRA_WORKER_NODE_URL=node.url,
        SUBSTRA_WORKER_NODE_TOKEN=node.token,
        SUBSTRA_WORKER_STATE_DIR=str(base / "worker-state"),
        SUBSTRA_WORKER_RETRY_BACKOFF="0.2",
        SUBSTRA_WORKER_RETRY_BACKOFF_MAX="2",
        SUBSTRA_WORKER_TASK_MAX_RETRIES="3",
    )
    worker_log = base / "worker.log"
    try:
        worker = _start_worker(worker_env, worker_log)
    except BaseException:
        node.stop()
        raise
    stack = Stack(redis_server.url, node, data_root, worker, worker_log)
    yield stack
    _stop_process_group(worker)
    node.stop()


# --- watchers ----------------------------------------------------------------------------

_roots = itertools.count()


@dataclass
class RunningWatcher:
    """A Watcher running its loop in a thread of the test process."""

    watcher: Watcher
    thread: threading.Thread

    @property
    def state(self) -> WatchState:
        return self.watcher.state

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.watcher.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the watcher did not stop"
        self.watcher.gateway.close()


@pytest.fixture
def new_root(stack) -> Callable[[], Path]:
    """A fresh watch root under the node's data root (so server_path mode works)."""

    def make() -> Path:
        root = stack.data_root / f"root{next(_roots)}"
        root.mkdir()
        return root

    return make


@pytest.fixture
def run_watcher(stack) -> Iterator[Callable[..., RunningWatcher]]:
    """Start a Watcher on a root, in a thread; every one still running is stopped at the end."""
    running: list[RunningWatcher] = []

    def start(root: Path, *, archive_to: Path | None = None, **overrides) -> RunningWatcher:
        settings = stack.settings(**overrides)
        gateway = JobGateway.from_settings(settings)
        state = WatchState(gateway.redis, root, prefix=gateway.prefix)
        watcher = Watcher(
            root, gateway=gateway, state=state, settings=settings, archive_to=archive_to
        )
        watcher.start()
        thread = threading.Thread(target=watcher.run, name="watcher", daemon=True)
        thread.start()
        rw = RunningWatcher(watcher, thread)
        running.append(rw)
        return rw

    yield start
    for rw in running:
        if rw.alive():
            rw.stop()


def state_of(stack: Stack, root: Path) -> WatchState:
    """A reader of a root's records, independent of any watcher."""
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    return WatchState(client, root)
