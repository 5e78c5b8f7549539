"""Fixtures of the operations tests: the real CLI, a real Redis, worker and node, tools on PATH.

The queue tests' helpers are reused: the bundled Redis, ``WorkerProcess`` and
``worker_env`` (a real Celery worker subprocess), and ``start_node`` (the
embedded node served over HTTP).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from substra_worker.cli import main
from substra_worker.redis_server import BundledRedis
from substra_worker.settings import Settings
from tests.support.node_process import NodeProcess, start_node
from tests.support.stack import FAST, WorkerProcess, worker_env

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
NO_WORKER_DB = 1  # a Redis database no worker consumes: its jobs stay queued


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_tool(name: str) -> str:
    """The path of a command-line tool: skipped locally when missing, failed in CI."""
    found = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if found:
        return found
    message = f"{name} is not installed"
    if in_ci():
        pytest.fail(f"{message}: CI must install it (see the test's docstring)")
    pytest.skip(message)


def clean_env(**values: object) -> dict[str, str]:
    """This environment without any SUBSTRA_WORKER_* variable, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBSTRA_WORKER_")}
    env.pop("REDIS_URL", None)
    for name, value in values.items():
        if value is not None:
            env[f"SUBSTRA_WORKER_{name.upper()}"] = str(value)
    return env


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def stop_process(process: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 90) -> int:
    """Send ``sig`` and wait for the exit code (SIGKILL to its group if it hangs)."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            process.kill()
        process.wait(10)
        raise


def flush(url: str) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    keys = [k for k in client.keys("*") if not k.startswith("_kombu.binding")]
    if keys:
        client.delete(*keys)
    client.close()


# --- Redis, node, worker -------------------------------------------------------------------


@pytest.fixture(scope="session")
def ops_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BundledRedis]:
    server = BundledRedis(tmp_path_factory.mktemp("ops-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ops_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = start_node(tmp_path_factory.mktemp("ops-node"))
    yield node
    node.stop()


@pytest.fixture(scope="module")
def ops_worker(
    ops_redis: BundledRedis, ops_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    state = tmp_path_factory.mktemp("ops-worker")
    settings = Settings(redis_url=ops_redis.url, state_dir=state, **FAST)
    worker = WorkerProcess(worker_env(settings, ops_node), state / "worker.log", concurrency=2)
    worker.start(timeout=60)
    yield worker
    worker.stop()


@pytest.fixture
def redis_url(ops_redis: BundledRedis) -> str:
    """Database 0 of the session's Redis, emptied of jobs (the worker consumes it)."""
    flush(ops_redis.url)
    return ops_redis.url


@pytest.fixture
def idle_redis_url(ops_redis: BundledRedis) -> str:
    """Another database of the same Redis that no worker consumes, emptied."""
    url = ops_redis.url.rsplit("/", 1)[0] + f"/{NO_WORKER_DB}"
    flush(url)
    return url


# --- the CLI ---------------------------------------------------------------------------------


class Cli:
    """``substra-worker`` run in this process (click's runner) in a folder of its own."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.cwd = cwd
        self.env = env

    def __call__(self, *args: str, input: str | None = None) -> Result:  # noqa: A002
        runner = CliRunner()
        old = Path.cwd()
        os.chdir(self.cwd)
        try:
            # every SUBSTRA_WORKER_* variable of the test process is hidden from the command
            hidden = {k: None for k in os.environ if k.startswith("SUBSTRA_WORKER_")}
            return runner.invoke(main, list(args), env={**hidden, **self.env}, input=input)
        finally:
            os.chdir(old)


@pytest.fixture
def cli_factory(tmp_path: Path) -> Callable[..., Cli]:
    def make(redis_url: str | None, **settings: object) -> Cli:
        cwd = tmp_path / "cwd"
        cwd.mkdir(exist_ok=True)
        env = {"SUBSTRA_WORKER_REDIS_URL": redis_url} if redis_url else {}
        env.update({f"SUBSTRA_WORKER_{k.upper()}": str(v) for k, v in settings.items()})
        return Cli(cwd, env)

    return make


def run_cli(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess:
    """The installed ``substra-worker`` entry point as a subprocess."""
    exe = shutil.which("substra-worker", path=str(VENV_BIN)) or "substra-worker"
    return subprocess.run(
        [exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
