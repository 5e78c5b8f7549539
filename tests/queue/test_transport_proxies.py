"""The worker's Client still honours the environment's proxy settings, read once per host.

The transport keeps what ``requests`` finds in the environment (``*_PROXY``,
``NO_PROXY``) per scheme and host instead of reading it on every call. A real
HTTP proxy on loopback shows which requests went through it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from substra_worker.redis_server import free_port
from substra_worker.sdk import Client
from tests.support.http_server import QuietHTTPServer

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class Recorder(QuietHTTPServer):
    """Answers every GET with ``[]`` and records its request target.

    As a proxy it receives absolute targets (``http://host:port/path``); called
    directly, bare paths.
    """

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.targets: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.targets.append(self.path)
        body = json.dumps([]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_calls_go_through_the_proxy_the_environment_names(recorder, no_proxy_environment):
    # Given a node address nothing listens on, and HTTP_PROXY naming a live proxy
    unreachable = f"http://127.0.0.1:{free_port()}"
    no_proxy_environment.setenv("HTTP_PROXY", recorder.url)

    # When a client calls that node, several times
    with Client(url=unreachable, token="t") as client:
        assert client.list_node() == []
        assert client.list_node() == []

    # Then every call went through the proxy
    assert recorder.targets == [f"{unreachable}/node/"] * 2


def test_no_proxy_hosts_are_called_directly(recorder, no_proxy_environment):
    no_proxy_environment.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # dead proxy
    no_proxy_environment.setenv("NO_PROXY", "127.0.0.1")
    with Client(url=recorder.url, token="t") as client:
        assert client.list_node() == []
    assert recorder.targets == ["/node/"]


def test_the_environment_is_read_at_a_clients_first_call_to_a_host(recorder, no_proxy_environment):
    # A client that called a host keeps the settings it found; a new client reads them again
    with Client(url=recorder.url, token="t") as client:
        assert client.list_node() == []
        no_proxy_environment.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
        assert client.list_node() == []
    assert recorder.targets == ["/node/", "/node/"]
    unreachable = f"http://127.0.0.1:{free_port()}"
    no_proxy_environment.setenv("HTTP_PROXY", recorder.url)
    with Client(url=unreachable, token="t") as client:
        assert client.list_node() == []
    assert recorder.targets[-1] == f"{unreachable}/node/"
