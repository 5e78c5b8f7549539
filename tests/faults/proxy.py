"""A fault-injection HTTP proxy on loopback: a real HTTP hop between a worker and the node.

Every request is parsed and, unless a rule says otherwise, forwarded to the node
and its answer sent back. A rule picks requests (method, path pattern, then the
first N per path or a seeded fraction) and does one of:

- ``answer``: answer ``status`` without forwarding (the node never sees it: 503, 500);
- ``lag``: wait ``delay`` seconds, then forward (a slow network);
- ``after``: forward, let the node do the work, then answer ``status`` instead of
  the node's answer. For 408 the body carries the key the node answered with
  (``pkhash`` / ``computePlanID``): "accepted but not confirmed";
- ``slow``: forward, then hold the node's answer ``delay`` seconds (beyond the
  client's socket timeout, the client gives up on an attempt that did happen);
- ``hold``: forward, then hold the answer until ``release()`` (or the proxy closes);
- ``throttle``: forward the request body at ``rate`` bytes per second (a slow
  upload, to catch a worker in the middle of it).

``progress`` shows the bodies being forwarded, ``injected`` counts the faults.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.http_server import QuietHTTPServer

CHUNK = 64 * 1024  # bytes copied at a time
UPSTREAM_TIMEOUT = 120.0  # seconds the proxy waits on the node
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
ACTIONS = ("answer", "lag", "after", "slow", "hold", "throttle")


@dataclass
class Rule:
    """Which requests get which fault."""

    name: str
    action: str
    status: int = 503
    method: str | None = "POST"  # None: any method
    path: str = r".*"  # regular expression matched against the whole path (no query)
    first: int | None = None  # the first N matching requests of each path
    fraction: float | None = None  # else this share of the matching requests (seeded)
    delay: float = 0.0  # seconds, for "lag" and "slow"
    rate: float = 0.0  # bytes per second, for "throttle"
    min_body: int = 0  # only requests whose body declares at least this many bytes
    seed: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    _rng: random.Random = field(init=False, repr=False)
    _seen: Counter = field(default_factory=Counter, repr=False)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {ACTIONS}")
        self._rng = random.Random(self.seed)

    def picks(self, method: str, path: str, length: int) -> bool:
        """Whether this request gets the fault (called once per request, under a lock)."""
        if self.method is not None and method != self.method:
            return False
        if not re.fullmatch(self.path, path) or length < self.min_body:
            return False
        self._seen[path] += 1
        if self.first is not None:
            return self._seen[path] <= self.first
        if self.fraction is not None:
            return self._rng.random() < self.fraction
        return True

    def release(self) -> None:
        """Let the answers a ``hold`` rule keeps go (and the next ones through at once)."""
        self.released.set()


@dataclass
class Transfer:
    """A request body on its way to the node."""

    method: str
    path: str
    total: int | None
    sent: int = 0
    done: bool = False


class FaultProxy:
    """The proxy: ``url`` for the worker, ``rules`` for the faults (changeable at any time)."""

    def __init__(self, upstream_url: str, rules: list[Rule] | None = None):
        host_port = upstream_url.split("://", 1)[1].rstrip("/")
        host, port = host_port.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.rules: list[Rule] = list(rules or [])
        self.injected: Counter = Counter()  # rule name -> faults injected
        self.requests: Counter = Counter()  # "METHOD path" -> requests seen
        self.transfers: list[Transfer] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_rules(self, *rules: Rule) -> None:
        with self._lock:
            self.rules = list(rules)

    def choose(self, method: str, path: str, length: int) -> Rule | None:
        with self._lock:
            self.requests[f"{method} {path}"] += 1
            for rule in self.rules:
                if rule.picks(method, path, length):
                    self.injected[rule.name] += 1
                    return rule
        return None

    def transfer(self, method: str, path: str, total: int | None) -> Transfer:
        t = Transfer(method, path, total)
        with self._lock:
            self.transfers.append(t)
        return t

    def in_flight(self, min_total: int = 0) -> list[Transfer]:
        """Request bodies being forwarded right now (at least ``min_total`` bytes long)."""
        with self._lock:
            return [t for t in self.transfers if not t.done and (t.total or 0) >= min_total]

    def close(self) -> None:
        self._closed.set()
        for rule in self.rules:
            rule.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's session expects
    owner: FaultProxy

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
        pass  # quiet: tests read the counters

    def do_GET(self) -> None:  # noqa: N802 - the base class's naming
        self._proxy()

    def do_POST(self) -> None:  # noqa: N802
        self._proxy()

    def do_PUT(self) -> None:  # noqa: N802
        self._proxy()

    def do_DELETE(self) -> None:  # noqa: N802
        self._proxy()

    # --- one request ----------------------------------------------------------------------

    def _proxy(self) -> None:
        proxy = self.owner
        path = self.path.split("?", 1)[0]
        length = self.headers.get("Content-Length")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        total = int(length) if length is not None else None
        rule = proxy.choose(self.command, path, total or 0)
        if rule is not None and rule.action == "answer":
            self._drain_body(total, chunked)
            self._answer(rule.status, {"message": f"fault proxy: {rule.name}"})
            return
        if rule is not None and rule.action == "lag" and proxy._closed.wait(rule.delay):
            return
        try:
            status, headers, body = self._forward(path, total, chunked, rule)
        except OSError as e:
            # the node is down or broke the connection: what a gateway says
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._answer(502, {"message": f"fault proxy: upstream unreachable: {e}"})
            return
        if rule is not None and rule.action == "after":
            self._answer(rule.status, _fault_body(rule, status, body))
            return
        if rule is not None and rule.action == "slow" and proxy._closed.wait(rule.delay):
            return
        if rule is not None and rule.action == "hold":
            while not rule.released.wait(0.05):
                if proxy._closed.is_set():
                    return
        with contextlib.suppress(OSError):
            self._reply(status, headers, body)

    def _forward(
        self, path: str, total: int | None, chunked: bool, rule: Rule | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        host, port = self.owner.upstream
        conn = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT, blocksize=CHUNK)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_HEADERS:
                    conn.putheader(name, value)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.putheader("Connection", "close")
            conn.endheaders()
            transfer = self.owner.transfer(self.command, path, total)
            rate = rule.rate if rule is not None and rule.action == "throttle" else 0.0
            try:
                for chunk in self._body_chunks(total, chunked):
                    if chunked:
                        conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    else:
                        conn.send(chunk)
                    transfer.sent += len(chunk)
                    if rate:
                        time.sleep(len(chunk) / rate)
                if chunked:
                    conn.send(b"0\r\n\r\n")
            finally:
                transfer.done = True
            response = conn.getresponse()
            body = response.read()
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_HEADERS]
            return response.status, headers, body
        finally:
            conn.close()

    def _body_chunks(self, total: int | None, chunked: bool):
        if chunked:
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers end with an empty line
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    data = self.rfile.read(min(CHUNK, remaining))
                    if not data:
                        raise ConnectionError("client went away mid-body")
                    remaining -= len(data)
                    yield data
                self.rfile.readline(1024)
            return
        remaining = total or 0
        while remaining:
            data = self.rfile.read(min(CHUNK, remaining))
            if not data:
                raise ConnectionError("client went away mid-body")
            remaining -= len(data)
            yield data

    def _drain_body(self, total: int | None, chunked: bool) -> None:
        for _ in self._body_chunks(total, chunked):
            pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self._reply(status, [("Content-Type", "application/json")], data)

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


def _fault_body(rule: Rule, node_status: int, node_body: bytes) -> dict:
    """The fault's JSON answer; for 408, with the key the node answered (when it did)."""
    body: dict[str, Any] = {"message": f"fault proxy: {rule.name} (node said {node_status})"}
    if rule.status != 408 or node_status >= 400:
        return body
    with contextlib.suppress(ValueError):
        answer = json.loads(node_body)
        if isinstance(answer, list):
            keys = [a.get("pkhash") for a in answer if isinstance(a, dict)]
            body["pkhash"] = keys[0] if len(keys) == 1 else keys
        elif isinstance(answer, dict):
            for name in ("computePlanID", "pkhash", "key"):
                if answer.get(name):
                    body["pkhash" if name == "key" else name] = answer[name]
    return body
