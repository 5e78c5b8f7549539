"""The node refuses every request without a valid token, and keeps only tokens' hashes."""

from __future__ import annotations

import itertools
import re
import time

import pytest
import requests

from substra_worker.node.auth import hash_token
from substra_worker.node.server import LOGIN_PATH, build_url_map
from tests.faults.results import record_security
from tests.security.conftest import files_text
from tests.support.node_process import start_node

pytestmark = pytest.mark.timeout(120)

KEY = "ab" * 32
ACCEPT = {"Accept": "application/json;version=0.0"}


def every_route() -> list[tuple[str, str]]:
    """(method, path) for every route of the protocol, each ``any(...)`` choice spelled out."""
    out = []
    for rule in build_url_map().iter_rules():
        parts = re.split(r"(<[^>]+>)", rule.rule)
        choices = []
        for part in parts:
            match = re.fullmatch(r"<any\(([^)]*)\):\w+>", part)
            if match:
                choices.append([c.strip() for c in match.group(1).split(",")])
            elif part.startswith("<"):
                choices.append([KEY])
            else:
                choices.append([part])
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out += [(method, "".join(p)) for p in itertools.product(*choices)]
    return sorted(set(out))


ROUTES = every_route()
BAD_HEADERS = {
    "none": {},
    "unknown token": {"Authorization": "Token " + "0" * 40},
    "empty token": {"Authorization": "Token "},
    "other scheme": {"Authorization": "Bearer {token}"},
    "basic": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    "two tokens": {"Authorization": "Token {token} {token}"},
    "hash as token": {"Authorization": "Token {hash}"},
}


def test_every_route_refuses_a_missing_or_invalid_token(node):
    assert len(ROUTES) > 40  # the enumeration did find the protocol
    refused = 0
    for (method, path), (name, headers) in itertools.product(ROUTES, BAD_HEADERS.items()):
        if path == LOGIN_PATH:
            continue
        filled = {
            k: v.format(token=node.token, hash=hash_token(node.token)) for k, v in headers.items()
        }
        response = requests.request(
            method, f"{node.url}{path}", headers={**ACCEPT, **filled}, timeout=10
        )
        assert response.status_code == 401, (method, path, name, response.text)
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["message"]
        assert response.headers.get("WWW-Authenticate") == "Token"
        refused += 1
    assert refused >= 7 * 40
    # and with the token, the same node answers
    assert requests.get(f"{node.url}/algo/", headers=node.headers, timeout=10).status_code == 200
    record_security(
        "Node: every route refuses a missing or invalid token (401, JSON)",
        "pass",
        f"{len(ROUTES) - 1} routes x {len(BAD_HEADERS)} kinds of bad Authorization header",
    )


def test_login_refuses_bad_credentials_alike(node):
    answers = []
    for form in (
        {"username": "admin", "password": "wrong"},
        {"username": "nobody", "password": "admin"},
        {"username": "admin", "password": ""},
        {"username": "", "password": ""},
        {},
    ):
        response = requests.post(f"{node.url}{LOGIN_PATH}", data=form, headers=ACCEPT, timeout=10)
        assert response.status_code == 400, (form, response.text)
        answers.append(response.json()["message"])
    # wrong password and unknown user are told apart by nothing
    assert answers[0] == answers[1]
    record_security("Node: a wrong password and an unknown user are refused alike", "pass")


def test_tokens_are_stored_hashed_survive_a_restart_and_expire(tmp_path):
    node = start_node(tmp_path / "node", env={"SUBSTRA_WORKER_TOKEN_TTL": "3"})
    try:
        second = node.login("admin", "admin")
        tokens = [node.token, second]
        # only their sha256 is on disk (database, journal and all)
        stored = b"".join(files_text(node.node_dir).values())
        for token in tokens:
            assert token.encode() not in stored
            assert hash_token(token).encode() in stored
        assert b"admin:admin" not in stored
        # a restart keeps them valid
        node.restart()
        for token in tokens:
            headers = {**ACCEPT, "Authorization": f"Token {token}"}
            assert requests.get(f"{node.url}/node/", headers=headers, timeout=10).ok
        # and they expire
        time.sleep(3.2)
        headers = {**ACCEPT, "Authorization": f"Token {tokens[0]}"}
        response = requests.get(f"{node.url}/node/", headers=headers, timeout=10)
        assert response.status_code == 401 and "expired" in response.json()["message"]
        assert tokens[0].encode() not in node.log_text().encode()
        record_security(
            "Node: tokens stored as their sha256 only; they survive a restart and expire", "pass"
        )
    finally:
        node.stop()
