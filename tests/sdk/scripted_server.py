"""A small scripted HTTP/1.1 server on loopback that records every request it receives.

Tests script answers per (method, path) and then read back exactly what the
client put on the wire: method, path, raw query, headers, body, form fields and
multipart parts. It also counts accepted TCP connections (keep-alive checks) and
can answer late or cut an answer short (timeout and broken-stream checks).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.http_server import QuietHTTPServer


@dataclass
class Part:
    """One multipart part as it was sent."""

    name: str
    filename: str | None
    headers: dict[str, str]
    content: bytes


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: str  # raw, undecoded
    headers: dict[str, str]  # lower-cased names
    body_file: Path | None = None
    _body: bytes = b""

    @property
    def body(self) -> bytes:
        return self.body_file.read_bytes() if self.body_file else self._body

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)

    @property
    def parts(self) -> list[Part]:
        return parse_multipart(self.headers.get("content-type", ""), self.body)

    def part(self, name: str) -> Part:
        (found,) = [p for p in self.parts if p.name == name]
        return found


@dataclass
class Reply:
    """A scripted answer."""

    status: int = 200
    body: Any = None  # JSON-able, or bytes/str sent as is
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    cut_after: int | None = None  # send only this many body bytes, then close
    stall: tuple[int, float] | None = None  # (bytes, seconds): pause mid-body that long

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        if self.body is None:
            return b""
        return json.dumps(self.body).encode()

    def content_type(self) -> str:
        if isinstance(self.body, bytes | str):
            return "application/octet-stream" if isinstance(self.body, bytes) else "text/plain"
        return "application/json"


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """Split a multipart/form-data body into its parts, bytes for bytes."""
    params = dict(p.strip().split("=", 1) for p in content_type.split(";")[1:] if "=" in p)
    boundary = params["boundary"].strip('"').encode()
    sections = body.split(b"--" + boundary)
    assert sections[-1].strip() in (b"--", b""), (
        "multipart body does not end with a closing boundary"
    )
    parts = []
    for section in sections[1:-1]:
        assert section.startswith(b"\r\n") and section.endswith(b"\r\n")
        head, _, content = section[2:-2].partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = dict(
            p.strip().split("=", 1)
            for p in headers.get("content-disposition", "").split(";")[1:]
            if "=" in p
        )
        filename = disposition.get("filename")
        parts.append(
            Part(
                name=disposition["name"].strip('"'),
                filename=filename.strip('"') if filename is not None else None,
                headers=headers,
                content=content,
            )
        )
    return parts


class ScriptedServer:
    """Answers scripted replies per (method, path); the last reply of a script repeats."""

    def __init__(self, spool_dir: Path | None = None):
        self.requests: list[Recorded] = []
        self.connections = 0
        self.spool_dir = spool_dir  # when set, bodies go to files there, not memory
        self._scripts: dict[tuple[str, str], deque[Reply | Callable[[Recorded], Reply]]] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(_Handler):
            owner = server

        class Server(QuietHTTPServer):
            def get_request(self) -> tuple[socket.socket, Any]:
                conn = super().get_request()
                with server._lock:
                    server.connections += 1
                return conn

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def script(self, method: str, path: str, *replies: Reply | Callable[[Recorded], Reply]) -> None:
        """Answer ``method path`` with ``replies`` in turn, the last one for ever after."""
        self._scripts[(method, path)] = deque(replies)

    def reply_for(self, recorded: Recorded) -> Reply:
        with self._lock:
            queue = self._scripts.get((recorded.method, recorded.path))
            if not queue:
                return Reply(
                    404, {"message": f"nothing scripted for {recorded.method} {recorded.path}"}
                )
            reply = queue.popleft() if len(queue) > 1 else queue[0]
        return reply(recorded) if callable(reply) else reply

    def only(self, method: str | None = None) -> Recorded:
        """The single request received (of ``method`` when given)."""
        found = [r for r in self.requests if method is None or r.method == method]
        assert len(found) == 1, [(r.method, r.path) for r in self.requests]
        return found[0]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: ScriptedServer

    def setup(self) -> None:
        super().setup()
        # answers go out as headers then body: without this, Nagle + delayed ACK add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _handle(self) -> None:
        split = urlsplit(self.path)
        recorded = Recorded(
            method=self.command,
            path=split.path,
            query=split.query,
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        self._read_body(recorded)
        with self.owner._lock:
            self.owner.requests.append(recorded)
        reply = self.owner.reply_for(recorded)
        if reply.delay:
            time.sleep(reply.delay)
        payload = reply.payload()
        self.send_response(reply.status)
        headers = {"Content-Type": reply.content_type(), **reply.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if reply.cut_after is not None:
            self.wfile.write(payload[: reply.cut_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if reply.stall is not None:
            sent, pause = reply.stall
            self.wfile.write(payload[:sent])
            self.wfile.flush()
            time.sleep(pause)
            payload = payload[sent:]
        self.wfile.write(payload)

    def _read_body(self, recorded: Recorded) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        spool = self.owner.spool_dir
        if spool is None:
            recorded._body = self.rfile.read(length)
            return
        spool.mkdir(parents=True, exist_ok=True)
        target = spool / f"body-{len(self.owner.requests)}-{threading.get_ident()}"
        with target.open("wb") as out:
            remaining = length
            while remaining:
                chunk = self.rfile.read(min(remaining, 64 * 1024))
                if not chunk:
                    break
                out.write(chunk)
                remaining -= len(chunk)
        recorded.body_file = target

    do_GET = do_POST = do_PUT = do_DELETE = _handle


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """``{relative posix path: content}`` of every file under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


__all__ = ["Part", "Recorded", "Reply", "ScriptedServer", "parse_multipart", "tree_bytes"]
