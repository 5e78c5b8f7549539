"""Token authentication: every route but login needs a valid token; tokens are stored hashed."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import requests

from tests.http.conftest import ACCEPT
from tests.support.node_process import start_node


def login(url: str, **form: str) -> requests.Response:
    return requests.post(f"{url}/api-token-auth/", data=form, headers=ACCEPT, timeout=10)


@pytest.mark.parametrize(
    "authorization",
    [None, "Token not-a-token", "Token ", "Bearer whatever", "Token a b"],
    ids=["missing", "unknown", "empty", "other-scheme", "two-words"],
)
@pytest.mark.parametrize("path", ["/node/", "/algo/", "/data_sample/", "/no/such/route/"])
def test_requests_without_a_valid_token_get_401(api, authorization, path):
    headers = dict(ACCEPT)
    if authorization is not None:
        headers["Authorization"] = authorization
    response = requests.get(api.url + path, headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["WWW-Authenticate"] == "Token"
    assert isinstance(response.json()["message"], str)


def test_a_post_without_token_is_refused_and_creates_nothing(api):
    response = requests.post(
        api.url + "/traintuple/", json={"algo_key": "0" * 64}, headers=ACCEPT, timeout=10
    )
    assert response.status_code == 401


def test_login_gives_a_working_token_with_an_expiry(api):
    response = login(api.url, username="admin", password="admin")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expires_at"}
    expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires_at > datetime.now(UTC)
    assert api.get("/node/", token=body["token"]).status_code == 200
    # each login is a fresh token; the earlier one keeps working
    assert login(api.url, username="admin", password="admin").json()["token"] != body["token"]
    assert api.get("/node/").status_code == 200


@pytest.mark.parametrize(
    "form",
    [
        {"username": "admin", "password": "wrong"},
        {"username": "nobody", "password": "admin"},
        {"username": "admin"},
        {},
    ],
    ids=["wrong-password", "unknown-user", "no-password", "nothing"],
)
def test_bad_logins_get_400_json(api, form):
    response = login(api.url, **form)
    assert response.status_code == 400
    assert "message" in response.json()
    assert "token" not in response.json()


def test_credentials_in_the_url_are_ignored(api):
    response = requests.post(
        f"{api.url}/api-token-auth/?username=admin&password=admin", headers=ACCEPT, timeout=10
    )
    assert response.status_code == 400


def test_login_accepts_a_json_body_too(api):
    response = requests.post(
        f"{api.url}/api-token-auth/",
        json={"username": "admin", "password": "admin"},
        headers=ACCEPT,
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["token"]


def test_login_is_post_only(api):
    response = requests.get(f"{api.url}/api-token-auth/", headers=ACCEPT, timeout=10)
    assert response.status_code == 405
    assert response.json()["message"]


def test_tokens_are_stored_hashed_and_survive_a_restart(tmp_path):
    node = start_node(tmp_path / "state", users=("alice:s3cret-pass", "bob:other"))
    try:
        token = node.token
        bob_token = node.login("bob", "other")
        # Given the token store on disk
        db = node.node_dir / "auth.db"
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT token_hash, username FROM tokens").fetchall()
        stored = dict(rows)
        # Then only sha256 digests are stored, never the tokens or the passwords
        assert hashlib.sha256(token.encode()).hexdigest() in stored
        assert stored[hashlib.sha256(bob_token.encode()).hexdigest()] == "bob"
        for path in node.node_dir.glob("auth.db*"):
            raw = path.read_bytes()
            assert token.encode() not in raw
            assert bob_token.encode() not in raw
            assert b"s3cret-pass" not in raw
        assert b"s3cret-pass" not in node.log_path.read_bytes()

        # When the node restarts, the tokens still work
        node.restart()
        headers = {**ACCEPT, "Authorization": f"Token {token}"}
        assert requests.get(f"{node.url}/node/", headers=headers, timeout=10).status_code == 200
    finally:
        assert node.stop() == 0
    assert "shutting down" in node.log_text()


def test_expired_tokens_are_refused(tmp_path):
    node = start_node(tmp_path / "state", env={"SUBSTRA_WORKER_TOKEN_TTL": "1"})
    try:
        headers = {**ACCEPT, "Authorization": f"Token {node.token}"}
        time.sleep(1.2)
        response = requests.get(f"{node.url}/node/", headers=headers, timeout=10)
        assert response.status_code == 401
        assert "expired" in response.json()["message"]
    finally:
        node.stop()


def test_the_node_refuses_to_start_without_users(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "substra_worker", "node", "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "--user NAME:PASSWORD" in result.stderr


def test_a_malformed_user_entry_is_refused_without_echoing_it(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "substra_worker", "node", "--port", "0", "--user", "pw-only"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "NAME:PASSWORD" in result.stderr
    assert "pw-only" not in result.stderr
