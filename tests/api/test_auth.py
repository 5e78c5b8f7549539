"""The API token: required on every route but /healthz and the dashboard page."""

from __future__ import annotations

import pytest

from substra_worker.api.app import ApiApp
from substra_worker.sdk.exceptions import ConfigurationError
from substra_worker.settings import Settings
from tests.api.stack import ApiClient

JOB = "/jobs/" + "a" * 32
PROTECTED = [
    ("GET", "/jobs"),
    ("POST", "/jobs"),
    ("GET", JOB),
    ("POST", JOB + "/retry"),
    ("POST", JOB + "/cancel"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer wrong-token",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer api-token-for-tests-and-more",
        "Bearer \u00e9t\u00e9",
    ],
)
def test_every_route_but_health_needs_the_token(idle_api: ApiClient, header: str | None):
    for method, path in PROTECTED:
        headers = {"Authorization": header} if header else {}
        response = idle_api.request(method, path, token=None, headers=headers, json={})
        assert response.status_code == 401, (method, path, header)
        assert response.json()["message"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_scheme_may_be_bearer_or_token(idle_api: ApiClient):
    for header in (
        "Bearer api-token-for-tests",
        "Token api-token-for-tests",
        "bearer  api-token-for-tests ",
    ):
        response = idle_api.get("/jobs", token=None, headers={"Authorization": header})
        assert response.status_code == 200, header


def test_public_routes_need_no_token(idle_api: ApiClient):
    assert idle_api.get("/", token=None).status_code == 200
    assert idle_api.get("/static/dashboard.js", token=None).status_code == 200
    # no worker consumes this database: unhealthy, but answered without a token
    assert idle_api.get("/healthz", token=None).status_code == 503


def test_the_api_needs_its_own_token(idle_settings: Settings):
    with pytest.raises(ConfigurationError, match="no API token"):
        ApiApp(idle_settings.replace(api_token=None))
    with pytest.raises(ConfigurationError, match="node's token"):
        ApiApp(idle_settings.replace(node_token="shared-secret", api_token="shared-secret"))


def test_the_node_token_is_not_an_api_token(idle_settings: Settings, node):
    from substra_worker.api.app import ApiServer

    server = ApiServer(idle_settings.replace(node_token=node.token)).start()
    try:
        client = ApiClient(server, token=node.token)
        assert client.get("/jobs").status_code == 401
    finally:
        server.stop()
