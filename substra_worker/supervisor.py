"""Run a set of child processes, restart the ones that die, stop them all cleanly.

``substra-worker up`` is a supervisor of Redis, the node, a Celery worker, the
watcher and the API. Children are started in order (each may wait until it is
ready), stopped in reverse order with their own signal and grace period, and a
child that dies on its own is reported and restarted with a backoff, so one
crash never takes the stack down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class ChildSpec:
    """How to run, recognise as ready, and stop one child process."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None  # full environment of the child (None: inherit)
    ready: Callable[[subprocess.Popen], bool] | None = None  # polled until true after start
    ready_timeout: float = 60.0  # seconds to become ready
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 20.0  # seconds between stop_signal and SIGKILL
    restart: bool = True
    echo: Callable[[str], bool] | None = None  # lines of the log also shown to the user


@dataclass
class Child:
    spec: ChildSpec
    log_path: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    deaths: list[float] = field(default_factory=list)


class ChildFailed(RuntimeError):
    """Raised when a child exits or does not become ready while the stack starts."""


class Supervisor:
    """Start, watch and stop a list of children; logs go to ``log_dir/<name>.log``."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        log_dir: Path,
        *,
        report: Callable[[str], None] = print,
        max_restarts: int = 5,  # within restart_window: then the child is given up
        restart_window: float = 60.0,  # seconds
        poll_interval: float = 0.5,  # seconds
    ):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self.children = [Child(spec, log_dir / f"{spec.name}.log") for spec in specs]
        self.report = report
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.poll_interval = poll_interval
        self._stopping = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------

    def add(self, spec: ChildSpec) -> None:
        """Add a child; the next ``start`` starts it."""
        self.children.append(Child(spec, self.log_dir / f"{spec.name}.log"))

    def start(self) -> None:
        """Start the children not started yet, in order, each ready before the next."""
        for child in self.children:
            if self._stopping.is_set():
                raise ChildFailed("stop requested while starting")
            if child.process is not None:
                continue
            self._spawn(child)
            self._wait_ready(child)

    def run(self) -> int:
        """Watch the children until ``request_stop``; restart those that die. Returns 0."""
        while not self._stopping.wait(self.poll_interval):
            for child in self.children:
                proc = child.process
                if proc is None or proc.poll() is None:
                    continue
                self._on_death(child, proc.returncode)
        return 0

    def request_stop(self, *_: object) -> None:
        """Ask ``run`` to return; safe from a signal handler."""
        self._stopping.set()

    def stop(self) -> None:
        """Stop the children in reverse start order, each within its grace period."""
        self._stopping.set()
        for child in reversed(self.children):
            self._terminate(child)

    # --- internals -----------------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        spec = child.spec
        logf = open(child.log_path, "ab", buffering=0)  # noqa: SIM115 - owned by the child
        try:
            child.process = subprocess.Popen(
                list(spec.argv),
                env=dict(spec.env) if spec.env is not None else None,
                stdout=subprocess.PIPE if spec.echo else logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # our Ctrl-C is not theirs: we stop them in order
            )
        except BaseException:
            logf.close()
            raise
        if spec.echo:
            threading.Thread(
                target=self._copy_output,
                args=(child.process, logf, spec),
                name=f"{spec.name}-output",
                daemon=True,
            ).start()
        else:
            logf.close()
        child.started_at = time.monotonic()

    def _copy_output(self, proc: subprocess.Popen, logf, spec: ChildSpec) -> None:
        """Copy a child's output to its log, showing the lines ``spec.echo`` selects."""
        with logf, proc.stdout:
            for raw in proc.stdout:
                logf.write(raw)
                line = raw.decode(errors="replace").rstrip()
                if spec.echo(line):
                    self.report(f"{spec.name}: {line}")

    def _wait_ready(self, child: Child) -> None:
        spec, proc = child.spec, child.process
        assert proc is not None
        deadline = time.monotonic() + spec.ready_timeout
        while spec.ready is not None and not spec.ready(proc):
            if proc.poll() is not None:
                raise ChildFailed(
                    f"{spec.name} exited with code {proc.returncode} while starting; "
                    f"see {child.log_path}"
                )
            if time.monotonic() > deadline or self._stopping.is_set():
                raise ChildFailed(
                    f"{spec.name} was not ready after {spec.ready_timeout:.0f}s; "
                    f"see {child.log_path}"
                )
            time.sleep(0.1)

    def _on_death(self, child: Child, code: int) -> None:
        spec = child.spec
        now = time.monotonic()
        child.deaths = [t for t in child.deaths if now - t < self.restart_window] + [now]
        child.process = None
        if not spec.restart:
            self.report(f"{spec.name} exited with code {code}; not restarted")
            return
        if len(child.deaths) > self.max_restarts:
            self.report(
                f"{spec.name} died {len(child.deaths)} times in {self.restart_window:.0f}s; "
                f"giving up on it (see {child.log_path})"
            )
            return
        delay = min(2 ** (len(child.deaths) - 1), 30)
        self.report(f"{spec.name} exited with code {code}; restarting in {delay}s")
        if self._stopping.wait(delay):
            return
        child.restarts += 1
        self._spawn(child)
        try:
            self._wait_ready(child)
        except ChildFailed as e:
            self.report(str(e))
            return
        self.report(f"{spec.name} restarted (pid {child.process.pid})")

    def _terminate(self, child: Child) -> None:
        proc = child.process
        if proc is None or proc.poll() is not None:
            return
        spec = child.spec
        # The stop signal goes to the child alone: it stops its own children in order
        # (a Celery worker lets its pool finish running jobs). The whole group is
        # killed only when the grace period is over.
        try:
            proc.send_signal(spec.stop_signal)
        except ProcessLookupError:
            return
        try:
            proc.wait(spec.stop_timeout)
        except subprocess.TimeoutExpired:
            self.report(f"{spec.name} did not stop within {spec.stop_timeout:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # whatever the child left behind in its group goes with it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def install_signal_handlers(supervisor: Supervisor) -> None:
    """SIGINT and SIGTERM ask the supervisor to stop (in the main thread only)."""
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
