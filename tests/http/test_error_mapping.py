"""The one place errors become answers, in process, with a node that fails on demand.

A real node does not raise unexpected exceptions on demand, so this drives the
WSGI application with a stand-in node whose calls raise what each test needs.
"""

from __future__ import annotations

import logging

import pytest
from werkzeug.test import Client

from substra_worker.node import errors
from substra_worker.node.auth import Authenticator, TokenStore
from substra_worker.node.server import NodeApp


class FailingNode:
    """Raises ``error`` from every read; records nothing."""

    def __init__(self, error: Exception):
        self.error = error

    def list_node(self):
        raise self.error

    def get(self, asset, key):
        raise self.error


@pytest.fixture
def make_client(tmp_path):
    stores = []

    def make(error: Exception) -> tuple[Client, dict]:
        store = TokenStore(tmp_path / "auth.db", ttl=60)
        stores.append(store)
        auth = Authenticator({"admin": "admin"}, store)
        app = NodeApp(FailingNode(error), auth, upload_dir=tmp_path / "up", max_upload_bytes=10**6)
        token = auth.login("admin", "admin")["token"]
        return Client(app), {"Authorization": f"Token {token}"}

    yield make
    for store in stores:
        store.close()


def test_unexpected_exceptions_are_500_without_details_but_logged(make_client, caplog):
    client, headers = make_client(RuntimeError("secret detail"))
    with caplog.at_level(logging.ERROR, logger="substra_worker.node.server"):
        response = client.get("/node/", headers=headers)
    assert response.status_code == 500
    assert response.json == {"message": "internal error"}
    assert "secret detail" not in response.get_data(as_text=True)
    assert "Traceback" in caplog.text and "secret detail" in caplog.text


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (errors.NotFound("no such algo"), 404, {"message": "no such algo"}),
        (
            errors.Conflict("exists", pkhash="ab" * 32),
            409,
            {"message": "exists", "pkhash": "ab" * 32},
        ),
        (
            errors.Conflict("exist", pkhash=["a", "b"]),
            409,
            {"message": "exist", "pkhash": ["a", "b"]},
        ),
        (errors.Forbidden("outside"), 403, {"message": "outside"}),
        (errors.BadRequest("bad"), 400, {"message": "bad"}),
    ],
)
def test_node_errors_map_to_their_status_and_body(make_client, error, status, body):
    client, headers = make_client(error)
    response = client.get("/algo/" + "ab" * 32 + "/", headers=headers)
    assert response.status_code == status
    assert response.json == body
