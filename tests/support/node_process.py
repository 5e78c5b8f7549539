"""Start ``substra-worker node`` as a real process on a free loopback port.

Other test folders use it as their node::

    node = start_node(tmp_path / "state")
    client = substra_worker.Client(url=node.url, token=node.token)
    ...
    node.stop()

The process writes its output to ``<state_dir>/node-process.log`` (read with
``log_text()``), so a chatty node never blocks on a full pipe.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

URL_LINE = re.compile(r"substra-worker node listening on (http://\S+)")
START_TIMEOUT = 30.0  # seconds for the node to print its URL


class NodeStartError(RuntimeError):
    """Raised when the node process exits or stays silent instead of listening."""


@dataclass
class NodeProcess:
    """A running ``substra-worker node`` process and a token to call it with."""

    state_dir: Path
    users: tuple[str, ...]
    data_roots: tuple[str, ...]
    env: dict[str, str]
    extra_args: tuple[str, ...] = ()
    port: int = 0
    python: str = sys.executable  # the interpreter that runs the node
    url: str = ""
    token: str = ""
    process: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.log_path = self.state_dir / "node-process.log"

    @property
    def node_dir(self) -> Path:
        """Where the node keeps node.db, its files and auth.db."""
        return self.state_dir / "node"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}", "Accept": "application/json;version=0.0"}

    def command(self) -> list[str]:
        args = [self.python, "-m", "substra_worker", "node", "--host", "127.0.0.1"]
        args += ["--port", str(self.port), "--state-dir", str(self.state_dir)]
        for user in self.users:
            args += ["--user", user]
        for root in self.data_roots:
            args += ["--data-root", str(root)]
        return args + list(self.extra_args)

    def start(self) -> NodeProcess:
        """Launch the process, wait for its URL, log in as the first user."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        self.url = self._wait_for_url(offset)
        self.port = int(self.url.rsplit(":", 1)[1])
        if self.users and not self.token:
            try:
                self.token = self.login(*self.users[0].split(":", 1))
            except BaseException:
                self.kill()
                raise
        return self

    def _wait_for_url(self, offset: int) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log_text(offset)
            match = URL_LINE.search(text)
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                raise NodeStartError(
                    f"node exited with {self.process.returncode} before listening:\n{text}"
                )
            time.sleep(0.05)
        self.kill()
        raise NodeStartError(f"node did not print its URL in {START_TIMEOUT}s:\n{self.log_text()}")

    def login(self, username: str, password: str) -> str:
        """A fresh token from ``/api-token-auth/``."""
        response = requests.post(
            f"{self.url}/api-token-auth/",
            data={"username": username, "password": password},
            headers={"Accept": "application/json;version=0.0"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["token"]

    def log_text(self, offset: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); return the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> NodeProcess:
        """Stop and start again on the same port and state; the token stays valid."""
        self.stop()
        return self.start()

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_node(
    state_dir: str | Path,
    *,
    users: Iterable[str] = ("admin:admin",),
    data_roots: Iterable[str | Path] = (),
    env: Mapping[str, str] | None = None,
    extra_args: Iterable[str] = (),
    python: str | None = None,
) -> NodeProcess:
    """Start a node on a free loopback port; ``env`` entries are added to this environment."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    node = NodeProcess(
        state_dir=Path(state_dir),
        users=tuple(users),
        data_roots=tuple(str(root) for root in data_roots),
        env=full_env,
        extra_args=tuple(extra_args),
        python=python or sys.executable,
    )
    return node.start()
