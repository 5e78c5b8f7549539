"""What every Client method puts on the wire, and what it makes of the answer."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from substra_worker.sdk import Client

from .conftest import ACCEPT, TOKEN, key
from .scripted_server import Recorded, Reply, ScriptedServer, tree_bytes

PERMISSIONS = {"public": False, "authorized_ids": ["MyOrg2MSP"]}


def assert_headers(r: Recorded, *, auth: bool = True) -> None:
    assert r.headers["accept"] == ACCEPT
    if auth:
        assert r.headers["authorization"] == f"Token {TOKEN}"
    else:
        assert "authorization" not in r.headers


def unzip(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


# --- login ---------------------------------------------------------------------------


def test_login_posts_form_fields_without_token_then_uses_the_new_token(server: ScriptedServer):
    server.script("POST", "/api-token-auth/", Reply(200, {"token": "fresh", "expires_at": "x"}))
    server.script("GET", "/node/", Reply(200, [{"id": "MyOrg1MSP", "isCurrent": True}]))
    with Client(url=server.url + "/") as client:  # a trailing slash on the base URL is dropped
        assert client.login("alice", "p@ss w&rd") == "fresh"
        client.list_node()

    login, node = server.requests
    assert (login.method, login.path, login.query) == ("POST", "/api-token-auth/", "")
    assert login.headers["content-type"] == "application/x-www-form-urlencoded"
    assert login.form == {"username": ["alice"], "password": ["p@ss w&rd"]}
    assert_headers(login, auth=False)
    assert node.headers["authorization"] == "Token fresh"


def test_version_goes_into_the_accept_header(server: ScriptedServer):
    server.script("GET", "/node/", Reply(200, []))
    with Client(url=server.url, token=TOKEN, version="1.2") as client:
        client.list_node()
    assert server.only().headers["accept"] == "application/json;version=1.2"


# --- data samples --------------------------------------------------------------------


def test_add_data_sample_local_streams_one_zip_in_part_path(client, server, sample_dirs):
    answer = [{"pkhash": key("s0"), "path": "/srv/s0", "validated": True}]
    server.script("POST", "/data_sample/", Reply(201, answer))
    data = {"path": str(sample_dirs[0]), "data_manager_keys": [key("dm")], "test_only": False}

    assert client.add_data_sample(data) == answer[0]

    r = server.only()
    assert (r.method, r.path, r.query) == ("POST", "/data_sample/", "")
    assert r.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert_headers(r)
    assert [p.name for p in r.parts] == ["json", "path"]
    assert r.part("json").filename is None
    assert json.loads(r.part("json").content) == {
        "data_manager_keys": [key("dm")],
        "test_only": False,
    }
    assert r.part("path").filename == "path"
    assert unzip(r.part("path").content) == tree_bytes(sample_dirs[0])


def test_add_data_samples_local_sends_every_folder_under_its_leaf_name(client, server, sample_dirs):
    answer = [{"pkhash": key(f"s{i}"), "path": f"/srv/s{i}", "validated": True} for i in range(3)]
    server.script("POST", "/data_sample/", Reply(201, answer))
    data = {
        "paths": [str(d) for d in sample_dirs],
        "data_manager_keys": [key("dm")],
        "test_only": True,
    }

    assert client.add_data_samples(data) == answer

    r = server.only()
    names = [p.name for p in r.parts]
    assert names == ["json", "sample0", "sample1", "sample2"]  # none skipped (bug 1)
    assert json.loads(r.part("json").content) == {
        "data_manager_keys": [key("dm")],
        "test_only": True,
    }
    for d in sample_dirs:
        assert unzip(r.part(d.name).content) == tree_bytes(d)


def test_add_data_samples_keeps_folders_that_share_a_leaf_name(client, server, tmp_path):
    folders = []
    for parent in ("a", "b"):
        d = tmp_path / parent / "sample"
        d.mkdir(parents=True)
        (d / "f.txt").write_text(parent)
        folders.append(d)
    server.script("POST", "/data_sample/", Reply(201, []))

    client.add_data_samples({"paths": [f"{d}/" for d in folders], "data_manager_keys": [key("dm")]})

    r = server.only()
    assert [p.name for p in r.parts] == ["json", "sample", "sample-2"]
    assert unzip(r.part("sample").content) == {"f.txt": b"a"}
    assert unzip(r.part("sample-2").content) == {"f.txt": b"b"}


@pytest.mark.parametrize(
    ("method", "data", "expected"),
    [
        (
            "add_data_sample",
            {"path": "/srv/data/s1", "data_manager_keys": [key("dm")], "test_only": True},
            {"pkhash": key("s1"), "path": "/srv/data/s1", "validated": True},
        ),
        (
            "add_data_samples",
            {"paths": ["/srv/data"], "data_manager_keys": [key("dm")], "multiple": True},
            [{"pkhash": key("s1"), "path": "/srv/data/s1", "validated": True}],
        ),
    ],
)
def test_add_data_samples_not_local_sends_the_server_paths_as_json(
    client, server, method, data, expected
):
    server.script(
        "POST",
        "/data_sample/",
        Reply(201, [{"pkhash": key("s1"), "path": "/srv/data/s1", "validated": True}]),
    )

    assert getattr(client, method)(data, local=False) == expected

    r = server.only()
    assert (r.method, r.path) == ("POST", "/data_sample/")
    assert r.headers["content-type"] == "application/json"
    assert r.json == data
    assert_headers(r)


# --- file assets ---------------------------------------------------------------------

FILE_ASSETS = [
    # (method, server name, input file fields -> (part name, fixture file))
    ("add_dataset", "data_manager", {"data_opener": "opener", "description": "description"}),
    ("add_objective", "objective", {"metrics": "metrics", "description": "description"}),
    ("add_algo", "algo", {"file": "algo", "description": "description"}),
    ("add_aggregate_algo", "aggregate_algo", {"file": "algo", "description": "description"}),
    ("add_composite_algo", "composite_algo", {"file": "algo", "description": "description"}),
]

PLAIN_FIELDS = {
    "add_dataset": {
        "name": "ds",
        "type": "csv",
        "objective_key": key("obj"),
        "permissions": PERMISSIONS,
        "metadata": {"k": "v"},
    },
    "add_objective": {
        "name": "obj",
        "metrics_name": "accuracy",
        "test_data_manager_key": key("dm"),
        "test_data_sample_keys": [key("s1"), key("s2")],
        "permissions": PERMISSIONS,
    },
    "add_algo": {"name": "algo", "permissions": PERMISSIONS, "metadata": {"a": "1"}},
    "add_aggregate_algo": {"name": "agg", "permissions": PERMISSIONS},
    "add_composite_algo": {"name": "comp", "permissions": {"public": True, "authorized_ids": []}},
}


@pytest.mark.parametrize(("method", "server_name", "file_fields"), FILE_ASSETS)
def test_file_asset_create_sends_json_field_and_file_parts_then_gets_the_asset(
    client, server, files, method, server_name, file_fields
):
    k = key(method)
    asset = {"key": k, "name": "whatever", "owner": "MyOrg1MSP"}
    server.script("POST", f"/{server_name}/", Reply(201, {"pkhash": k, "validated": True}))
    server.script("GET", f"/{server_name}/{k}/", Reply(200, asset))
    data = {**PLAIN_FIELDS[method], **{f: str(files[src]) for f, src in file_fields.items()}}

    assert getattr(client, method)(data) == asset

    post, get = server.requests
    assert (post.method, post.path) == ("POST", f"/{server_name}/")
    assert_headers(post)
    assert post.headers["content-type"].startswith("multipart/form-data")
    assert json.loads(post.part("json").content) == PLAIN_FIELDS[method]
    assert sorted(p.name for p in post.parts) == sorted(["json", *file_fields])
    for field, src in file_fields.items():
        part = post.part(field)
        assert part.filename == files[src].name
        assert part.content == files[src].read_bytes()
    assert (get.method, get.path, get.query) == ("GET", f"/{server_name}/{k}/", "")
    assert_headers(get)


# --- tuples and compute plans --------------------------------------------------------

TUPLES = [
    (
        "add_traintuple",
        "traintuple",
        {
            "algo_key": key("algo"),
            "data_manager_key": key("dm"),
            "train_data_sample_keys": [key("s1")],
            "tag": "t",
        },
    ),
    (
        "add_aggregatetuple",
        "aggregatetuple",
        {"algo_key": key("agg"), "in_models_keys": [key("m1"), key("m2")], "worker": "MyOrg1MSP"},
    ),
    (
        "add_composite_traintuple",
        "composite_traintuple",
        {
            "algo_key": key("comp"),
            "data_manager_key": key("dm"),
            "train_data_sample_keys": [key("s1")],
            "out_trunk_model_permissions": {"authorized_ids": ["MyOrg2MSP"]},
            "rank": 0,
            "compute_plan_id": key("cp"),
        },
    ),
    (
        "add_testtuple",
        "testtuple",
        {"objective_key": key("obj"), "traintuple_key": key("tt"), "metadata": {"m": "1"}},
    ),
]


@pytest.mark.parametrize(("method", "server_name", "data"), TUPLES)
def test_tuple_create_posts_exactly_the_given_fields_then_gets_the_tuple(
    client, server, method, server_name, data
):
    k = key(method)
    tuple_ = {"key": k, "status": "waiting", "rank": 0}
    server.script("POST", f"/{server_name}/", Reply(201, {"pkhash": k}))
    server.script("GET", f"/{server_name}/{k}/", Reply(200, tuple_))

    assert getattr(client, method)(data) == tuple_

    post, get = server.requests
    assert (post.method, post.path, post.query) == ("POST", f"/{server_name}/", "")
    assert post.headers["content-type"] == "application/json"
    assert post.json == data  # no null for the fields left out
    assert_headers(post)
    assert (get.method, get.path) == ("GET", f"/{server_name}/{k}/")


@pytest.mark.parametrize(
    "answer", [{"key": key("x")}, {"computePlanID": key("x")}, {"pkhash": key("x"), "key": "other"}]
)
def test_create_reads_the_key_from_pkhash_else_key_else_compute_plan_id(client, server, answer):
    server.script("POST", "/traintuple/", Reply(201, answer))
    server.script("GET", f"/traintuple/{key('x')}/", Reply(200, {"key": key("x")}))
    data = {
        "algo_key": key("a"),
        "data_manager_key": key("dm"),
        "train_data_sample_keys": [key("s")],
    }
    assert client.add_traintuple(data) == {"key": key("x")}


def test_add_compute_plan_returns_the_post_answer(client, server):
    plan = {"computePlanID": key("cp"), "traintupleKeys": [key("t1")], "IDToKey": {"a": key("t1")}}
    server.script("POST", "/compute_plan/", Reply(200, plan))
    data = {
        "traintuples": [
            {
                "traintuple_id": "a",
                "algo_key": key("algo"),
                "data_manager_key": key("dm"),
                "train_data_sample_keys": [key("s1")],
            }
        ],
        "clean_models": True,
        "tag": "round",
    }

    assert client.add_compute_plan(data) == plan

    r = server.only()
    assert (r.method, r.path) == ("POST", "/compute_plan/")
    assert r.json == data
    assert_headers(r)


def test_update_compute_plan_posts_to_update_ledger(client, server):
    plan = {"computePlanID": key("cp"), "status": "todo"}
    server.script("POST", f"/compute_plan/{key('cp')}/update_ledger/", Reply(200, plan))
    data = {"testtuples": [{"objective_key": key("o"), "traintuple_id": "a"}]}

    assert client.update_compute_plan(key("cp"), data) == plan

    r = server.only()
    assert r.json == data
    assert r.headers["content-type"] == "application/json"
    assert_headers(r)


def test_update_compute_plan_drops_null_fields(client, server):
    server.script("POST", f"/compute_plan/{key('cp')}/update_ledger/", Reply(200, {}))
    client.backend.update_compute_plan(key("cp"), {"traintuples": [], "testtuples": None})
    assert server.only().json == {"traintuples": []}


def test_cancel_compute_plan_posts_no_body(client, server):
    plan = {"computePlanID": key("cp"), "status": "canceled"}
    server.script("POST", f"/compute_plan/{key('cp')}/cancel/", Reply(200, plan))

    assert client.cancel_compute_plan(key("cp")) == plan

    r = server.only()
    assert r.body == b""
    assert_headers(r)


# --- links ---------------------------------------------------------------------------


def test_link_dataset_with_objective_posts_the_objective_key_as_a_form_field(client, server):
    server.script(
        "POST", f"/data_manager/{key('dm')}/update_ledger/", Reply(200, {"pkhash": key("dm")})
    )

    assert client.link_dataset_with_objective(key("dm"), key("obj")) == {"pkhash": key("dm")}

    r = server.only()
    assert r.headers["content-type"] == "application/x-www-form-urlencoded"
    assert r.form == {"objective_key": [key("obj")]}
    assert_headers(r)


def test_link_dataset_with_data_samples_repeats_the_form_fields(client, server):
    keys = [key("s1"), key("s2")]
    server.script("POST", "/data_sample/bulk_update/", Reply(200, {"keys": keys}))

    assert client.link_dataset_with_data_samples(key("dm"), keys) == {"keys": keys}

    r = server.only()
    assert r.body.decode() == (
        f"data_manager_keys={key('dm')}&data_sample_keys={keys[0]}&data_sample_keys={keys[1]}"
    )
    assert_headers(r)


# --- reads ---------------------------------------------------------------------------

GETS = [
    ("get_algo", "algo"),
    ("get_compute_plan", "compute_plan"),
    ("get_aggregate_algo", "aggregate_algo"),
    ("get_composite_algo", "composite_algo"),
    ("get_dataset", "data_manager"),
    ("get_objective", "objective"),
    ("get_testtuple", "testtuple"),
    ("get_traintuple", "traintuple"),
    ("get_aggregatetuple", "aggregatetuple"),
    ("get_composite_traintuple", "composite_traintuple"),
]


@pytest.mark.parametrize(("method", "server_name"), GETS)
def test_get(client, server, method, server_name):
    asset = {"key": key(method), "name": "é", "metadata": {}}
    server.script("GET", f"/{server_name}/{key(method)}/", Reply(200, asset))

    assert getattr(client, method)(key(method)) == asset

    r = server.only()
    assert (r.method, r.query, r.body) == ("GET", "", b"")
    assert_headers(r)


LISTS = [
    ("list_algo", "algo"),
    ("list_compute_plan", "compute_plan"),
    ("list_aggregate_algo", "aggregate_algo"),
    ("list_composite_algo", "composite_algo"),
    ("list_dataset", "data_manager"),
    ("list_objective", "objective"),
    ("list_testtuple", "testtuple"),
    ("list_traintuple", "traintuple"),
    ("list_aggregatetuple", "aggregatetuple"),
    ("list_composite_traintuple", "composite_traintuple"),
]


@pytest.mark.parametrize(("method", "server_name"), LISTS)
def test_list_flattens_the_list_of_lists(client, server, method, server_name):
    a, b = {"key": key("a")}, {"key": key("b")}
    server.script("GET", f"/{server_name}/", Reply(200, [[a, b]]))

    assert getattr(client, method)() == [a, b]

    r = server.only()
    assert (r.method, r.query) == ("GET", "")
    assert_headers(r)


def test_list_data_sample_returns_the_flat_answer(client, server):
    samples = [{"key": key("s1"), "owner": "o", "dataManagerKeys": [key("dm")]}]
    server.script("GET", "/data_sample/", Reply(200, samples))
    assert client.list_data_sample() == samples
    assert_headers(server.only())


def test_list_node(client, server):
    nodes = [{"id": "MyOrg1MSP", "isCurrent": True}, {"id": "MyOrg2MSP", "isCurrent": False}]
    server.script("GET", "/node/", Reply(200, nodes))
    assert client.list_node() == nodes
    r = server.only()
    assert (r.method, r.path, r.query) == ("GET", "/node/", "")
    assert_headers(r)


@pytest.mark.parametrize(("kwargs", "query"), [({}, "sort=desc"), ({"sort": "asc"}, "sort=asc")])
def test_leaderboard_sends_sort(client, server, kwargs, query):
    board = {"objective": {"key": key("o")}, "testtuples": []}
    server.script("GET", f"/objective/{key('o')}/leaderboard/", Reply(200, board))

    assert client.leaderboard(key("o"), **kwargs) == board

    r = server.only()
    assert r.query == query
    assert_headers(r)


# --- describe and download -----------------------------------------------------------

DESCRIBABLE = [
    ("describe_algo", "algo"),
    ("describe_aggregate_algo", "aggregate_algo"),
    ("describe_composite_algo", "composite_algo"),
    ("describe_dataset", "data_manager"),
    ("describe_objective", "objective"),
]


@pytest.mark.parametrize("absolute", [True, False])
@pytest.mark.parametrize(("method", "server_name"), DESCRIBABLE)
def test_describe_gets_the_asset_then_its_description(
    client, server, method, server_name, absolute
):
    k = key(method)
    address = f"/{server_name}/{k}/description/"
    asset = {
        "key": k,
        "description": {"hash": "h", "storageAddress": (server.url if absolute else "") + address},
    }
    server.script("GET", f"/{server_name}/{k}/", Reply(200, asset))
    server.script(
        "GET",
        address,
        Reply(200, "# Titre\n\nDonnées\n".encode(), {"Content-Type": "text/markdown"}),
    )

    assert getattr(client, method)(k) == "# Titre\n\nDonnées\n"

    get, desc = server.requests
    assert (get.path, desc.path) == (f"/{server_name}/{k}/", address)
    assert_headers(get)
    assert_headers(desc)


DOWNLOADS = [
    ("download_dataset", "data_manager", "opener", "opener", "opener.py"),
    ("download_algo", "algo", "content", "file", "algo.tar.gz"),
    ("download_aggregate_algo", "aggregate_algo", "content", "file", "aggregate_algo.tar.gz"),
    ("download_composite_algo", "composite_algo", "content", "file", "composite_algo.tar.gz"),
    ("download_objective", "objective", "metrics", "metrics", "metrics.zip"),
]


@pytest.mark.parametrize(("method", "server_name", "field", "route", "file_name"), DOWNLOADS)
def test_download_saves_the_file_under_the_protocol_name(
    client, server, tmp_path, method, server_name, field, route, file_name
):
    k = key(method)
    address = f"{server.url}/{server_name}/{k}/{route}/"
    content = bytes(range(256)) * 5000  # ~1.3 MB: several stream chunks
    server.script(
        "GET",
        f"/{server_name}/{k}/",
        Reply(200, {"key": k, field: {"hash": "h", "storageAddress": address}}),
    )
    server.script("GET", f"/{server_name}/{k}/{route}/", Reply(200, content))
    destination = tmp_path / "out"

    written = getattr(client, method)(k, str(destination))

    assert Path(written) == destination / file_name
    assert Path(written).read_bytes() == content
    assert [p.name for p in destination.iterdir()] == [file_name]  # no temp file left
    get, file_get = server.requests
    assert file_get.path == f"/{server_name}/{k}/{route}/"
    assert_headers(get)
    assert_headers(file_get)
