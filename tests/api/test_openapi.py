"""The OpenAPI description: served at /openapi.json, and the server holds to it.

schemathesis generates requests from the description (valid and invalid
ones) and checks that none gives a 500 and that every answer has a documented
status, content type and shape. Its run is bounded (few examples per route).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from substra_worker.api.app import ApiServer
from substra_worker.api.openapi import build_spec
from substra_worker.redis_server import BundledRedis
from tests.api.stack import API_TOKEN, ApiClient, api_settings, flush

schema = schemathesis.openapi.from_dict(build_spec())


def no_server_error(ctx, response, case) -> None:
    """No 5xx, but the documented 503 of /healthz (no worker consumes this database)."""
    if case.path == "/healthz" and response.status_code == 503:
        return
    if response.status_code >= 500:
        raise AssertionError(f"{case.method} {case.path}: {response.status_code} {response.text}")


CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed_api(
    redis_server: BundledRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiClient]:
    """An API over database 2 (no worker: health probes answer within 0.3 s)."""
    url = redis_server.url.rsplit("/", 1)[0] + "/2"
    flush(url)
    state = tmp_path_factory.mktemp("fuzz")
    server = ApiServer(api_settings(url, state, api_health_timeout=0.3)).start()
    yield ApiClient(server)
    server.stop()


def test_the_served_description_is_the_built_one(idle_api: ApiClient):
    response = idle_api.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == build_spec()
    assert idle_api.get("/openapi.json", token=None).status_code == 401


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_error_and_answers_as_described(case, fuzzed_api: ApiClient):
    case.call_and_validate(
        base_url=fuzzed_api.url,
        session=fuzzed_api.session,
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        checks=CHECKS,
    )
