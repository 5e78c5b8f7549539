"""A real stack for tests: Celery worker subprocesses, their environment, a Redis dump.

Shared by the queue, API, fault, operations and security suites; the fixtures
that build on these live in ``tests/queue/conftest.py``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from substra_worker.settings import Settings
from substra_worker.tasks.app import QUEUE
from tests.support.node_process import NodeProcess

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
