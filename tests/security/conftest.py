"""Fixtures of the security tests: a password-protected Redis, a node whose users come
from the environment (never argv), workers and a watcher, all real processes."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from substra_worker.redis_server import BundledRedis
from substra_worker.settings import Settings
from substra_worker.submitter import Submitter
from tests.faults.conftest import FAST
from tests.support.node_process import NodeProcess, start_node
from tests.support.stack import WorkerProcess, worker_env


@dataclass(frozen=True)
class Secrets:
    """Every secret of a deployment; none may appear anywhere but where it belongs."""

    redis_password: str
    node_password: str
    wrong_token: str  # a profile token the node does not know (its 401 is recorded)
    node_token: str = ""

    def all(self) -> dict[str, str]:
        return {
            "redis password": self.redis_password,
            "node password": self.node_password,
            "node token": self.node_token,
            "wrong token": self.wrong_token,
        }


def leaks(text: str, secrets_: Secrets) -> list[str]:
    """The names of the secrets found in ``text``."""
    return [name for name, value in secrets_.all().items() if value and value in text]


@pytest.fixture
def secret_values() -> Secrets:
    return Secrets(
        redis_password="redis-pw-" + secrets.token_hex(8),
        node_password="node-pw-" + secrets.token_hex(8),
        wrong_token="wrong-token-" + secrets.token_hex(12),
    )


@pytest.fixture
def protected_redis(tmp_path: Path, secret_values: Secrets) -> Iterator[BundledRedis]:
    server = BundledRedis(tmp_path / "redis", password=secret_values.redis_password)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env_node(tmp_path: Path, secret_values: Secrets) -> Iterator[NodeProcess]:
    """A node whose one user comes from SUBSTRA_WORKER_NODE_USERS, so no secret is in argv."""
    node = start_node(
        tmp_path / "node",
        users=(),
        env={"SUBSTRA_WORKER_NODE_USERS": f"admin:{secret_values.node_password}"},
    )
    node.token = node.login("admin", secret_values.node_password)
    yield node
    node.stop()


@pytest.fixture
def protected_settings(protected_redis: BundledRedis, tmp_path: Path) -> Settings:
    return Settings(redis_url=protected_redis.url, state_dir=tmp_path / "state", **FAST)


@pytest.fixture
def producer(protected_settings: Settings) -> Iterator[Submitter]:
    s = Submitter(protected_settings)
    yield s
    s.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``start_worker(settings, node, env=None, **settings)`` -> a running worker process."""
    workers: list[WorkerProcess] = []

    def start(
        settings: Settings,
        node: object,
        *,
        env: dict[str, str] | None = None,
        concurrency: int = 2,
        **extra: object,
    ) -> WorkerProcess:
        full_env = worker_env(settings, node, **{**FAST, **extra})  # type: ignore[arg-type]
        full_env.update(env or {})
        worker = WorkerProcess(full_env, tmp_path / f"worker-{len(workers)}.log", concurrency)
        workers.append(worker)
        return worker.start(timeout=60)

    yield start
    for worker in workers:
        worker.stop()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    out: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            out += children
            pending += children
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def environment(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    return dict(e.decode(errors="replace").split("=", 1) for e in raw if b"=" in e)


def process_tree_cmdlines(pid: int) -> list[str]:
    """The command lines of ``pid`` and of every process below it."""
    return [cmdline(p) for p in [pid, *descendants(pid)]]


def files_text(folder: Path) -> dict[Path, bytes]:
    """Every regular file below ``folder`` with its bytes."""
    return {p: p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


def environ_without_substra() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SUBSTRA_WORKER_")}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node for the tests that only read it (user admin:admin)."""
    process = start_node(tmp_path_factory.mktemp("node"))
    yield process
    process.stop()
