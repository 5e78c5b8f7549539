"""Fixtures of the queue tests: a real Redis, real Celery workers, the embedded node over HTTP."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from substra_worker.redis_server import BundledRedis
from substra_worker.settings import Settings
from substra_worker.status_store import StatusStore
from substra_worker.submitter import Submitter
from substra_worker.tasks.app import QUEUE
from tests.support.node_process import NodeProcess, start_node

# quick retries, so that fault scenarios take seconds
FAST = {
    "retry_backoff": 0.2,
    "retry_backoff_max": 1.0,
    "task_max_retries": 30,
    "retry_timeout": 1,  # the client's own 408/5xx budget
    "request_timeout": 10.0,
    "follow_interval": 0.3,
    "batch_size": 2,
}


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


class WorkerProcess:
    """``celery -A substra_worker.tasks worker`` as a real subprocess in its own session."""

    def __init__(
        self, env: dict[str, str], log_path: Path, concurrency: int = 2, cli: bool = False
    ):
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.cli = cli  # through `substra-worker worker` instead of the celery command
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        if self.cli:
            return [
                sys.executable,
                "-m",
                "substra_worker",
                "worker",
                f"--concurrency={self.concurrency}",
            ]
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "substra_worker.tasks",
            "worker",
            "--loglevel=INFO",
            f"--concurrency={self.concurrency}",
            f"--queues={QUEUE}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # killpg reaches the pool's children too
            )
        deadline = time.monotonic() + timeout
        while " ready." not in self.log_text(offset):
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_text(offset)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready after {timeout}s:\n{self.log_text(offset)}")
            time.sleep(0.05)
        return self

    def log_text(self, offset: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM to the whole process group), then SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, as a crash would."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def worker_env(settings: Settings, node: NodeProcess | None, **extra: object) -> dict[str, str]:
    env = dict(os.environ)
    env = {k: v for k, v in env.items() if not k.startswith("SUBSTRA_WORKER_")}
    values = {
        "redis_url": settings.redis_url,
        "state_dir": str(settings.state_dir),
        **FAST,
        **extra,
    }
    if node is not None:
        values["node_url"] = node.url
        values["node_token"] = node.token
    for name, value in values.items():
        if value is not None:
            env[f"SUBSTRA_WORKER_{name.upper()}"] = str(value)
    return env


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


def _decoded(value: str) -> list[str]:
    """``value``, plus the decoded bodies of the Celery messages it holds."""
    out = [value]
    try:
        data = json.loads(value)
    except ValueError:
        return out
    messages = data if isinstance(data, list) else [data]
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("body"), str):
            with contextlib.suppress(ValueError):
                out.append(base64.b64decode(message["body"]).decode("utf-8", "replace"))
            out.append(json.dumps(message.get("headers", {})))
    return out


def redis_dump(client: redis.Redis) -> str:
    """Every key and every value in Redis, message bodies decoded, as one text."""
    parts: list[str] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key)
        if kind == "string":
            parts += _decoded(client.get(key) or "")
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                parts += [field, *_decoded(value)]
        elif kind == "list":
            for value in client.lrange(key, 0, -1):
                parts += _decoded(value)
        elif kind == "set":
            parts += list(client.smembers(key))
        elif kind == "zset":
            parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
    return "\n".join(parts)


# --- a fault proxy: a real HTTP hop whose answers can be held back -----------------------


class HoldingProxy:
    """A TCP proxy to the node on loopback; while ``hold`` is set, answers are not forwarded.

    Requests still reach the node (which does the work and answers), so a client
    behind the proxy is left waiting on an attempt whose effect already happened:
    the uncertain attempt that exactly-once handling is about.
    """

    def __init__(self, upstream_url: str):
        host_port = upstream_url.split("://", 1)[1].rstrip("/")
        host, port = host_port.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.hold = threading.Event()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        self.requests_seen = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not answers:
                    self.requests_seen += 1
                while answers and self.hold.is_set() and not self._closed:
                    time.sleep(0.05)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._closed = True
        self.hold.clear()
        self._server.close()
