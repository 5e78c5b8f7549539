"""Serving a WSGI app with waitress: the one server loop of the node and the API.

Both answer every error in JSON, including the ones waitress detects itself
(a body over the size limit, a malformed request), and both stop cleanly from
a signal handler or another thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from waitress import create_server, wasyncore
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Request, Response


class JsonApp:
    """A WSGI app whose every answer, refusals and bugs included, is JSON.

    ``handle`` is the one place an exception becomes an answer: subclasses
    route in ``_dispatch`` and translate their own exceptions in ``answer``,
    leaving the rest to this class (an HTTP error keeps its status, anything
    else is a logged 500). Each request is logged by path only: a query
    string may carry a token.
    """

    log = logging.getLogger(__name__)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        return self.handle(Request(environ))(environ, start_response)

    def handle(self, request: Request) -> Response:
        started = time.monotonic()
        try:
            response = self._dispatch(request)
        except Exception as e:  # noqa: BLE001 - every error becomes an answer here
            response = self.answer(request, e)
        self._finish(response)
        self.log.info(
            "%s %s %s %.3fs",
            request.method,
            request.path,
            response.status_code,
            time.monotonic() - started,
        )
        return response

    def _dispatch(self, request: Request) -> Response:
        raise NotImplementedError

    def answer(self, request: Request, error: Exception) -> Response:
        """The answer to ``error``; called inside the ``except`` block, so a log has its trace."""
        if isinstance(error, HTTPException):
            response = json_response({"message": error.description}, error.code or 500)
            if isinstance(error, MethodNotAllowed) and error.valid_methods:
                response.headers["Allow"] = ", ".join(error.valid_methods)
            return response
        self.log.exception("unexpected error on %s %s", request.method, request.path)
        return json_response({"message": "internal error"}, 500)

    def _finish(self, response: Response) -> None:
        """Headers every answer carries."""


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


class JsonErrorTask(ErrorTask):
    """Answers the errors waitress detects itself (413, malformed requests) in JSON."""

    def execute(self) -> None:
        error = self.request.error
        body = json.dumps({"message": f"{error.reason}: {error.body}"}).encode("utf-8")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def public_base_url(host: str, port: int) -> str:
    """The ``http://host:port`` clients reach a server listening on ``host`` at."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port), to share with forked servers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


class WaitressServer:
    """A WSGI app behind waitress: bind at construction, ``run()`` until ``stop()``.

    Subclasses build their app, call ``_bind``, and release their own resources
    in ``_on_shutdown``.
    """

    name = "substra-worker"
    _server = None

    def _bind(
        self,
        app: Callable,
        *,
        host: str,
        port: int,
        threads: int,
        max_request_body_size: int,
        sock: socket.socket | None = None,
    ) -> None:
        """Listen on ``host:port``, or on ``sock`` when given (a socket shared by processes)."""
        self._map: dict = {}
        where: dict[str, Any] = (
            {"sockets": [sock]} if sock is not None else {"host": host, "port": port}
        )
        self._server = create_server(
            app,
            map=self._map,
            **where,
            threads=threads,
            max_request_body_size=max_request_body_size,
            ident="substra-worker",
            expose_tracebacks=False,
            clear_untrusted_proxy_headers=True,
        )
        self._server.channel_class = JsonErrorChannel
        self.host = host
        self.port: int = self._server.effective_port
        self.url = public_base_url(host, self.port)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` was asked."""
        return self._stopping.is_set()

    def _on_start(self) -> None:
        """Called once before serving."""

    def _on_shutdown(self) -> None:
        """Called once after serving: close what the subclass opened."""

    def run(self) -> None:
        """Serve until ``stop()`` (or KeyboardInterrupt), then shut everything down."""
        try:
            self._on_start()
            while not self._stopping.is_set():
                wasyncore.loop(timeout=1.0, map=self._map, use_poll=True, count=1)
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=10)
            wasyncore.close_all(self._map)
            self._on_shutdown()

    def start(self) -> WaitressServer:
        """Serve from a background thread (``stop()`` ends it)."""
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Ask ``run()`` to return; safe from a signal handler or another thread."""
        self._stopping.set()
        with contextlib.suppress(OSError):  # already closed
            self._server.pull_trigger()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
