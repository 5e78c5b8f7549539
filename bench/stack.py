"""The real processes a benchmark drives: Redis, the embedded node, Celery workers, the watcher.

Each is started the way a user starts it (``substra-worker node``, a Celery worker
with the same arguments as ``substra-worker worker``, ``substra-worker watch``),
as a child process in its own session, with its output in a log file and its
configuration in ``SUBSTRA_WORKER_*`` variables. Nothing here is measured: the
benchmarks time what they do with these processes once they are ready.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from bench.measure import BenchError, peak_rss_mb, rss_mb

ROOT = Path(__file__).resolve().parent.parent  # the repository: bench is importable from it
START_TIMEOUT = 60.0  # seconds for a process to say it is ready
STOP_TIMEOUT = 30.0  # seconds for a process to stop after SIGTERM before SIGKILL
URL_LINE = re.compile(r"substra-worker node listening on (http://\S+)")
QUEUE = "substra-worker"  # substra_worker.tasks.app.QUEUE


def child_env(settings: Mapping[str, object] | None = None) -> dict[str, str]:
    """This environment without any ``SUBSTRA_WORKER_*`` variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBSTRA_WORKER_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    for name, value in (settings or {}).items():
        if value is not None:
            env[f"SUBSTRA_WORKER_{name.upper()}"] = str(value)
    return env


class Child:
    """A child process in its own session whose output goes to ``log_path``."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, ready: str):
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.ready = ready  # text of the log line that says it is ready
        self.process: subprocess.Popen | None = None
        self._offset = 0

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError("process not started")
        return self.process.pid

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # killpg reaches its children (Celery's pool) too
            )
        deadline = time.monotonic() + START_TIMEOUT
        while self.ready not in self.log_text():
            if self.process.poll() is not None:
                raise BenchError(f"{self.argv[:4]} exited early:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"{self.argv[:4]} not ready after {START_TIMEOUT:g}s")
            time.sleep(0.05)
        return self

    def log_text(self) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            return f.read().decode("utf-8", "replace")

    def peak_rss_mb(self) -> float:
        """Peak RSS of the process itself, MB (its children are not counted)."""
        return peak_rss_mb(self.pid)

    def rss_mb(self) -> float:
        """Current RSS of the process itself, MB."""
        return rss_mb(self.pid)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it does not stop in time."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Node(Child):
    """``substra-worker node`` on a free loopback port, with one user logged in."""

    def __init__(self, state_dir: Path, settings: Mapping[str, object] | None = None):
        self.state_dir = Path(state_dir)
        self._password = secrets.token_urlsafe(16)
        argv = [sys.executable, "-m", "substra_worker", "node", "--host", "127.0.0.1"]
        argv += ["--port", "0", "--state-dir", str(self.state_dir)]
        argv += ["--user", f"bench:{self._password}"]
        super().__init__(argv, child_env(settings), self.state_dir / "node.log", "listening on")
        self.url = ""
        self.token = ""

    def start(self) -> Node:
        super().start()
        match = URL_LINE.search(self.log_text())
        if match is None:
            raise BenchError("the node printed no URL")
        self.url = match.group(1)
        response = requests.post(
            f"{self.url}/api-token-auth/",
            data={"username": "bench", "password": self._password},
            headers={"Accept": "application/json;version=0.0"},
            timeout=30,
        )
        response.raise_for_status()
        self.token = response.json()["token"]
        return self

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}", "Accept": "application/json;version=0.0"}

    def client(self):
        """A new ``Client`` of this node."""
        from substra_worker import Client

        return Client(url=self.url, token=self.token)


class Worker(Child):
    """A Celery worker with the arguments of ``substra-worker worker`` (plus the bench tasks).

    ``settings`` become its ``SUBSTRA_WORKER_*`` environment; the node it calls is
    ``node``. The module ``bench.noop`` is loaded too, for the no-op baseline.
    """

    def __init__(
        self,
        log_path: Path,
        *,
        redis_url: str,
        node: Node | None,
        concurrency: int,
        settings: Mapping[str, object] | None = None,
    ):
        values: dict[str, object] = {"redis_url": redis_url, "worker_concurrency": concurrency}
        if node is not None:
            values.update(node_url=node.url, node_token=node.token)
        values.update(settings or {})
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "substra_worker.tasks",
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            f"--queues={QUEUE}",
            "--without-gossip",
            "--without-mingle",
            "--include=bench.noop",
            f"--hostname=bench-{os.getpid()}-{secrets.token_hex(3)}@%h",
        ]
        super().__init__(argv, child_env(values), log_path, " ready.")
        self.concurrency = concurrency


class Watcher(Child):
    """``substra-worker watch ROOT`` with ``settings`` (quiet period, batch window...)."""

    def __init__(self, root: Path, log_path: Path, *, redis_url: str, settings: Mapping):
        values = {"redis_url": redis_url, **settings}
        argv = [sys.executable, "-m", "substra_worker", "watch", str(root)]
        super().__init__(argv, child_env(values), log_path, "substra-worker watch: watching")
