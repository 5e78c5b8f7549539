"""Serving the node from one process, or from several that share its listening socket.

Registering uploads is CPU-bound (multipart parsing, extraction, hashing) and
one Python process uses one core, so ``node_processes`` > 1 forks servers that
accept on the same socket. The stores are multi-process safe; only the first
process runs tuples (its runners also pick up the tuples the others create).
A server process that dies stops them all, so that a supervisor (``up``)
restarts the node whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from substra_worker.node.auth import TokenStore
from substra_worker.node.node import Node
from substra_worker.node.server import NodeServer
from substra_worker.settings import Settings
from substra_worker.wsgi import listen_socket

log = logging.getLogger(__name__)

STOP_TIMEOUT = 20.0  # seconds the other processes get to stop before SIGKILL


def serve(
    settings: Settings,
    users: Mapping[str, str],
    data_roots: Iterable[str | Path],
    *,
    announce: Callable[[str], None],
) -> int:
    """Serve until SIGINT or SIGTERM; ``announce(url)`` once listening. Returns an exit code."""
    roots = tuple(data_roots)
    if settings.node_processes <= 1:
        server = NodeServer(settings, users=users, data_roots=roots)
        _stop_on_signals(server)
        announce(server.url)
        server.run()
        return 0
    _create_stores(settings)
    sock = listen_socket(settings.node_host, settings.node_port)
    children: list[int] = []
    try:
        # fork before any thread exists in this process
        for _ in range(settings.node_processes - 1):
            pid = os.fork()
            if pid == 0:
                _child(settings, users, roots, sock)
            children.append(pid)
        server = NodeServer(settings, users=users, data_roots=roots, sock=sock)
    except BaseException:
        _stop_children(children)
        sock.close()
        raise
    _stop_on_signals(server)
    failed = threading.Event()
    threading.Thread(
        target=_watch_children, args=(children, server, failed), name="node-processes", daemon=True
    ).start()
    announce(server.url)
    log.info("serving from %d processes (pids %d, %s)", len(children) + 1, os.getpid(), children)
    try:
        server.run()
    finally:
        _stop_children(children)
        sock.close()
    return 1 if failed.is_set() else 0


def _create_stores(settings: Settings) -> None:
    """Create the node's databases once, before forking: processes never race to make them."""
    node_dir = Path(settings.node_state_dir)
    Node(node_dir, node_id=settings.node_id).close()
    TokenStore(node_dir / "auth.db", settings.token_ttl).close()


def _child(settings: Settings, users: Mapping[str, str], roots: tuple, sock: socket.socket) -> None:
    """A serving process that runs no tuples; never returns."""
    code = 1
    try:
        _die_with_parent()
        server = NodeServer(settings, users=users, data_roots=roots, sock=sock, compute=False)
        _stop_on_signals(server)
        server.run()
        code = 0
    except BaseException:
        log.exception("node process %d failed", os.getpid())
    finally:
        logging.shutdown()
        os._exit(code)


def _stop_on_signals(server: NodeServer) -> None:
    def stop(signum: int, frame: object) -> None:
        server.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (elsewhere: nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _watch_children(children: list[int], server: NodeServer, failed: threading.Event) -> None:
    """Stop the whole node when a serving process exits on its own."""
    while not server.stopping:
        for pid in children:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                children.remove(pid)
                if server.stopping:
                    return  # a shutdown under way (Ctrl-C reaches every process)
                log.error("node process %d exited (status %d): stopping the node", pid, status)
                if status != 0:
                    failed.set()
                server.stop()
                return
        time.sleep(0.5)


def _stop_children(children: list[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for pid in children:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                break
            time.sleep(0.05)
