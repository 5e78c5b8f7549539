"""The status-code table, exist_ok, the in-call retries, and transport failures."""

from __future__ import annotations

import socket
import time

import pytest
import requests

from substra_worker.sdk import Client, exceptions
from substra_worker.sdk.remote import RemoteBackend

from .conftest import TOKEN, key
from .scripted_server import Reply, ScriptedServer

TRAINTUPLE = {
    "algo_key": key("algo"),
    "data_manager_key": key("dm"),
    "train_data_sample_keys": [key("s1")],
}


@pytest.fixture
def no_retry_client(server: ScriptedServer):
    with Client(url=server.url, token=TOKEN, retry_timeout=0) as c:
        yield c


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, exceptions.InvalidRequest),
        (401, exceptions.AuthenticationError),
        (403, exceptions.AuthorizationError),
        (404, exceptions.NotFound),
        (408, exceptions.RequestTimeout),
        (409, exceptions.AlreadyExists),
        (500, exceptions.InternalServerError),
        (502, exceptions.GatewayUnavailable),
        (503, exceptions.GatewayUnavailable),
        (504, exceptions.GatewayUnavailable),
        (405, exceptions.HTTPError),
        (418, exceptions.HTTPError),
        (501, exceptions.HTTPError),
    ],
)
def test_status_table(no_retry_client, server, status, error):
    body = {"message": "no way", "pkhash": key("x")}
    server.script("GET", f"/algo/{key('a')}/", Reply(status, body))

    with pytest.raises(exceptions.SDKException) as caught:
        no_retry_client.get_algo(key("a"))

    assert type(caught.value) is error
    assert caught.value.status_code == status
    assert "no way" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert len(server.requests) == 1


def test_invalid_request_carries_the_body_in_errors(client, server):
    body = {"message": {"name": ["too long"]}}
    server.script("POST", "/traintuple/", Reply(400, body))
    with pytest.raises(exceptions.InvalidRequest) as caught:
        client.add_traintuple(TRAINTUPLE)
    assert caught.value.errors == body


def test_conflict_carries_the_key(client, server):
    server.script("POST", "/traintuple/", Reply(409, {"message": "exists", "pkhash": key("t")}))
    with pytest.raises(exceptions.AlreadyExists) as caught:
        client.add_traintuple(TRAINTUPLE)
    assert caught.value.pkhash == key("t")
    assert len(server.requests) == 1  # no GET without exist_ok


@pytest.mark.parametrize("status", [400, 401])
def test_refused_login_is_bad_login(server, status):
    server.script("POST", "/api-token-auth/", Reply(status, {"message": "bad credentials"}))
    with Client(url=server.url) as client, pytest.raises(exceptions.BadLoginException) as caught:
        client.login("alice", "wrong")
    assert caught.value.status_code == status
    assert "wrong" not in str(caught.value)


def test_login_server_error_is_not_bad_login(server):
    server.script("POST", "/api-token-auth/", Reply(500, {"message": "boom"}))
    client = Client(url=server.url, retry_timeout=0)
    with client, pytest.raises(exceptions.InternalServerError):
        client.login("alice", "pw")


def test_login_answer_without_token_is_invalid_response(server):
    server.script("POST", "/api-token-auth/", Reply(200, {"expires_at": "x"}))
    with Client(url=server.url) as client, pytest.raises(exceptions.InvalidResponse):
        client.login("alice", "pw")


@pytest.mark.parametrize("body", ["<html>oops</html>", b"", b"\xff\xfe"])
def test_non_json_2xx_is_invalid_response(client, server, body):
    server.script("GET", f"/algo/{key('a')}/", Reply(200, body))
    with pytest.raises(exceptions.InvalidResponse):
        client.get_algo(key("a"))


def test_no_url_is_a_clear_error_for_every_call(tmp_path):
    client = Client(url=None, token=TOKEN)
    calls = [
        lambda: client.login("u", "p"),
        lambda: client.get_algo(key("a")),
        lambda: client.list_algo(),
        lambda: client.list_node(),
        lambda: client.add_traintuple(TRAINTUPLE),
        lambda: client.cancel_compute_plan(key("cp")),
        lambda: client.download_algo(key("a"), tmp_path),
    ]
    for call in calls:
        with pytest.raises(exceptions.ConfigurationError, match="no node URL"):
            call()
    client.close()


# --- exist_ok --------------------------------------------------------------------------


def test_exist_ok_on_conflict_returns_the_existing_asset(client, server, files):
    existing = {"key": key("algo"), "name": "algo"}
    server.script("POST", "/algo/", Reply(409, {"message": "exists", "pkhash": key("algo")}))
    server.script("GET", f"/algo/{key('algo')}/", Reply(200, existing))
    data = {
        "name": "algo",
        "description": str(files["description"]),
        "file": str(files["algo"]),
        "permissions": {"public": True, "authorized_ids": []},
    }

    assert client.add_algo(data, exist_ok=True) == existing
    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", "/algo/"),
        ("GET", f"/algo/{key('algo')}/"),
    ]


@pytest.mark.parametrize("pkhash", [key("s"), [key("s")]])
def test_exist_ok_on_one_data_sample_returns_its_key(client, server, pkhash):
    server.script("POST", "/data_sample/", Reply(409, {"message": "exists", "pkhash": pkhash}))
    data = {"path": "/srv/s", "data_manager_keys": [key("dm")], "test_only": False}

    assert client.add_data_sample(data, local=False, exist_ok=True) == {"pkhash": key("s")}
    assert len(server.requests) == 1  # there is no GET route for a data sample


def test_exist_ok_with_several_keys_reraises(client, server):
    keys = [key("s1"), key("s2")]
    server.script("POST", "/data_sample/", Reply(409, {"message": "exists", "pkhash": keys}))
    data = {"path": "/srv/s", "data_manager_keys": [key("dm")]}
    with pytest.raises(exceptions.AlreadyExists) as caught:
        client.add_data_sample(data, local=False, exist_ok=True)
    assert caught.value.pkhash == keys


def test_add_data_samples_conflict_lists_the_keys(client, server, sample_dirs):
    keys = [key("s1"), key("s2")]
    server.script("POST", "/data_sample/", Reply(409, {"message": "exists", "pkhash": keys}))
    data = {"paths": [str(d) for d in sample_dirs], "data_manager_keys": [key("dm")]}
    with pytest.raises(exceptions.AlreadyExists) as caught:
        client.add_data_samples(data)
    assert caught.value.pkhash == keys


# --- 408: the node accepted but did not confirm ----------------------------------------


def test_408_is_resent_and_the_conflict_it_meets_is_success(client, server):
    tuple_ = {"key": key("t"), "status": "todo"}
    server.script(
        "POST",
        "/traintuple/",
        Reply(408, {"message": "timeout", "pkhash": key("t")}),
        Reply(409, {"message": "exists", "pkhash": key("t")}),
    )
    server.script("GET", f"/traintuple/{key('t')}/", Reply(200, tuple_))
    started = time.monotonic()

    assert client.add_traintuple(TRAINTUPLE) == tuple_  # exist_ok was not asked for

    assert time.monotonic() - started >= 1.0  # first backoff
    posts = [r for r in server.requests if r.method == "POST"]
    assert len(posts) == 2
    assert posts[0].json == posts[1].json == TRAINTUPLE


@pytest.mark.parametrize("status", [408, 503])
def test_a_streamed_upload_is_resent_in_full(client, server, sample_dirs, status):
    answer = [{"pkhash": key("s"), "path": "/p", "validated": True}]
    server.script("POST", "/data_sample/", Reply(status, {"message": "later"}), Reply(201, answer))
    data = {"path": str(sample_dirs[1]), "data_manager_keys": [key("dm")]}

    assert client.add_data_sample(data) == answer[0]

    first, second = server.requests
    assert first.part("path").content == second.part("path").content
    assert len(second.part("path").content) > 0


def test_408_retry_gives_up_after_retry_timeout(server):
    server.script("POST", "/traintuple/", Reply(408, {"message": "timeout", "pkhash": key("t")}))
    started = time.monotonic()
    client = Client(url=server.url, token=TOKEN, retry_timeout=2)
    with client, pytest.raises(exceptions.RequestTimeout) as caught:
        client.add_traintuple(TRAINTUPLE)
    elapsed = time.monotonic() - started
    assert 2.0 <= elapsed < 4.5
    assert caught.value.pkhash == key("t")
    assert len(server.requests) == 3  # at 0, 1 and 2 s


def test_408_without_retry_timeout_raises_at_once(no_retry_client, server):
    server.script("POST", "/traintuple/", Reply(408, {"message": "timeout"}))
    with pytest.raises(exceptions.RequestTimeout):
        no_retry_client.add_traintuple(TRAINTUPLE)
    assert len(server.requests) == 1


def test_408_on_a_compute_plan_waits_for_the_announced_plan_instead_of_resending(client, server):
    plan_id = key("cp")
    plan = {"computePlanID": plan_id, "status": "todo"}
    server.script(
        "POST", "/compute_plan/", Reply(408, {"message": "timeout", "computePlanID": plan_id})
    )
    server.script(
        "GET", f"/compute_plan/{plan_id}/", Reply(404, {"message": "not yet"}), Reply(200, plan)
    )
    data = {
        "traintuples": [
            {
                "traintuple_id": "a",
                "algo_key": key("algo"),
                "data_manager_key": key("dm"),
                "train_data_sample_keys": [key("s1")],
            }
        ]
    }

    assert client.add_compute_plan(data) == plan
    assert [r.method for r in server.requests] == ["POST", "GET", "GET"]


# --- 502/503/504: retried inside the call ----------------------------------------------


def test_503_is_retried_inside_the_call(client, server):
    server.script("GET", "/node/", Reply(503, {"message": "busy"}), Reply(200, [{"id": "n"}]))
    started = time.monotonic()
    assert client.list_node() == [{"id": "n"}]
    assert 1.0 <= time.monotonic() - started < 3.0
    assert len(server.requests) == 2


def test_503_retry_is_bounded_by_retry_timeout(client, server):
    server.script("GET", "/node/", Reply(503, {"message": "busy"}))
    started = time.monotonic()
    with pytest.raises(exceptions.GatewayUnavailable):
        client.list_node()  # retry_timeout=3: attempts at 0, 1 and 3 s
    assert 3.0 <= time.monotonic() - started < 5.0
    assert len(server.requests) == 3


# --- transport failures ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_connection_error():
    client = Client(url=f"http://127.0.0.1:{_free_port()}", token=TOKEN)
    with client, pytest.raises(exceptions.ConnectionError) as caught:
        client.list_node()
    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def test_socket_timeout_is_timeout(server):
    server.script("GET", "/node/", Reply(200, [], delay=1.5))
    backend = RemoteBackend(server.url, TOKEN, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(exceptions.Timeout) as caught:
        backend.list_node()
    assert time.monotonic() - started < 1.2
    assert isinstance(caught.value.__cause__, requests.Timeout)
    backend.close()


def test_default_timeout_comes_from_settings(server):
    from substra_worker.settings import get_settings

    backend = RemoteBackend(server.url, TOKEN)
    assert backend.transport.timeout == get_settings().request_timeout
    backend.close()


def test_408_on_a_compute_plan_that_never_appears_gives_up(server):
    plan_id = key("cp")
    server.script("POST", "/compute_plan/", Reply(408, {"computePlanID": plan_id}))
    server.script("GET", f"/compute_plan/{plan_id}/", Reply(404, {"message": "not found"}))
    client = Client(url=server.url, token=TOKEN, retry_timeout=1)
    with client, pytest.raises(exceptions.RequestTimeout) as caught:
        client.add_compute_plan({"tag": "empty"})
    assert caught.value.pkhash == plan_id
    assert [r.method for r in server.requests] == ["POST", "GET"]
