"""Every route of the protocol with raw requests: status codes, bodies, errors."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from substra_worker.sdk.filters import query_string
from tests import assets
from tests.http.conftest import (
    PERMISSIONS,
    add_dataset,
    add_objective,
    add_samples,
    unique,
)

BAD_KEYS = ["abc", "g" * 64, "0" * 63, "0" * 65]
UNKNOWN_KEY = "ab" * 32


def assert_json_error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body["message"], str) and body["message"]
    return body


def test_list_node(api):
    response = api.get("/node/")
    assert response.status_code == 200
    assert response.json() == [{"id": "MyOrg1MSP", "isCurrent": True}]


def test_another_accept_version_is_ignored(api):
    response = api.get("/node/", headers={"Accept": "application/json;version=9.9"})
    assert response.status_code == 200
    assert api.get("/node/", headers={"Accept": "*/*"}).status_code == 200


@pytest.mark.parametrize(
    "path", ["/nothing/", "/algo/x/y/z/", "/data_sample/" + "a" * 64 + "/", "/model/"]
)
def test_unknown_routes_are_404_json(api, path):
    assert_json_error(api.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/data_sample/bulk_update/"),
        ("PUT", "/algo/"),
        ("DELETE", "/data_manager/" + UNKNOWN_KEY + "/"),
        ("POST", "/node/"),
        ("GET", "/compute_plan/" + UNKNOWN_KEY + "/cancel/"),
    ],
)
def test_wrong_methods_are_405_json(api, method, path):
    response = api.request(method, path)
    assert_json_error(response, 405)
    assert response.headers["Allow"]


@pytest.mark.parametrize("key", BAD_KEYS)
@pytest.mark.parametrize(
    "path",
    [
        "/algo/{}/",
        "/traintuple/{}/",
        "/compute_plan/{}/",
        "/objective/{}/leaderboard/",
        "/data_manager/{}/opener/",
        "/composite_algo/{}/file/",
        "/objective/{}/description/",
        "/model/{}/file/",
    ],
)
def test_keys_that_are_not_64_hex_are_400(api, path, key):
    assert_json_error(api.get(path.format(key)), 400)


@pytest.mark.parametrize("key", BAD_KEYS[:2])
def test_bad_keys_in_update_routes_are_400(api, key):
    assert_json_error(api.post(f"/compute_plan/{key}/update_ledger/", json={}), 400)
    assert_json_error(api.post(f"/compute_plan/{key}/cancel/"), 400)
    assert_json_error(
        api.post(f"/data_manager/{key}/update_ledger/", data={"objective_key": UNKNOWN_KEY}), 400
    )
    form = {"data_manager_keys": [UNKNOWN_KEY], "data_sample_keys": [key]}
    assert_json_error(api.post("/data_sample/bulk_update/", data=form), 400)


@pytest.mark.parametrize(
    "asset",
    [
        "algo",
        "aggregate_algo",
        "composite_algo",
        "data_manager",
        "objective",
        "traintuple",
        "aggregatetuple",
        "composite_traintuple",
        "testtuple",
        "compute_plan",
    ],
)
def test_unknown_keys_are_404_and_lists_are_lists_of_lists(api, asset):
    assert_json_error(api.get(f"/{asset}/{UNKNOWN_KEY}/"), 404)
    response = api.get(f"/{asset}/")
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list) and len(body) == 1 and isinstance(body[0], list)


def test_dataset_create_get_files_and_conflict(api, files_dir):
    n = unique()
    opener = assets.opener_path(files_dir, variant=n)
    description = assets.description_path(f"# dataset ü {n}\n", files_dir)
    data = {"name": f"ds-{n}", "type": "csv", "permissions": PERMISSIONS, "metadata": {"k": "v"}}
    files = {"data_opener": opener, "description": description}

    response = api.create("/data_manager/", data, files)
    assert response.status_code == 201, response.text
    key = response.json()["pkhash"]
    assert key == hashlib.sha256(opener.read_bytes()).hexdigest()

    dataset = api.get(f"/data_manager/{key}/").json()
    assert dataset["key"] == key
    assert dataset["name"] == f"ds-{n}"
    assert dataset["metadata"] == {"k": "v"}
    assert dataset["opener"]["storageAddress"] == f"{api.url}/data_manager/{key}/opener/"
    assert dataset["description"]["storageAddress"] == f"{api.url}/data_manager/{key}/description/"

    opener_answer = api.get(dataset["opener"]["storageAddress"])
    assert opener_answer.status_code == 200
    assert opener_answer.content == opener.read_bytes()
    text = api.get(dataset["description"]["storageAddress"])
    assert text.headers["Content-Type"].startswith("text/markdown")
    assert text.text == description.read_text(encoding="utf-8")

    conflict = api.create("/data_manager/", data, files)
    assert assert_json_error(conflict, 409)["pkhash"] == key


def test_objective_create_get_files_and_conflict(api, files_dir, tmp_path):
    dataset = add_dataset(api, files_dir)
    samples = add_samples(api, tmp_path, dataset, 2, test=True)
    n = unique()
    metrics = assets.metrics_archive(files_dir, variant=n)
    description = assets.description_path(f"# objective {n}\n", files_dir)
    data = {
        "name": f"obj-{n}",
        "metrics_name": "neg_mse",
        "test_data_manager_key": dataset,
        "test_data_sample_keys": samples,
        "permissions": PERMISSIONS,
    }
    files = {"metrics": metrics, "description": description}
    response = api.create("/objective/", data, files)
    assert response.status_code == 201, response.text
    key = response.json()["pkhash"]
    assert key == hashlib.sha256(description.read_bytes()).hexdigest()

    objective = api.get(f"/objective/{key}/").json()
    assert objective["metrics"]["name"] == "neg_mse"
    assert objective["metrics"]["storageAddress"] == f"{api.url}/objective/{key}/metrics/"
    assert objective["testDataset"]["dataManagerKey"] == dataset
    assert sorted(objective["testDataset"]["dataSampleKeys"]) == sorted(samples)
    assert api.get(objective["metrics"]["storageAddress"]).content == metrics.read_bytes()
    assert api.get(objective["description"]["storageAddress"]).text.startswith("# objective")

    assert assert_json_error(api.create("/objective/", data, files), 409)["pkhash"] == key


@pytest.mark.parametrize("kind", ["algo", "aggregate_algo", "composite_algo"])
def test_algo_kinds_create_get_files_list_and_conflict(api, files_dir, kind):
    n = unique()
    archive = assets.make_algo_archive(kind, files_dir, variant=n)
    data = {"name": f"{kind}-{n}", "permissions": PERMISSIONS}
    files = {"file": archive, "description": assets.description_path(f"# {kind} {n}", files_dir)}
    response = api.create(f"/{kind}/", data, files)
    assert response.status_code == 201, response.text
    key = response.json()["pkhash"]
    assert key == hashlib.sha256(archive.read_bytes()).hexdigest()

    algo = api.get(f"/{kind}/{key}/").json()
    assert algo["content"]["storageAddress"] == f"{api.url}/{kind}/{key}/file/"
    assert algo["description"]["storageAddress"] == f"{api.url}/{kind}/{key}/description/"
    download = api.get(algo["content"]["storageAddress"], stream=True)
    assert download.status_code == 200
    assert download.raw.read() == archive.read_bytes()
    assert api.get(algo["description"]["storageAddress"]).text == f"# {kind} {n}"

    listed = api.get(f"/{kind}/?{query_string([f'{kind}:name:{kind}-{n}'])}").json()
    assert [[item["key"] for item in group] for group in listed] == [[key]]

    assert assert_json_error(api.create(f"/{kind}/", data, files), 409)["pkhash"] == key


def test_search_filters_with_or_groups_and_odd_characters(api, files_dir):
    n = unique()
    names = [f"odd name/{n}:&+?", f"plain-{n}"]
    keys = []
    for name in names:
        response = api.create(
            "/algo/",
            {"name": name, "permissions": PERMISSIONS},
            {
                "file": assets.make_algo_archive("algo", files_dir, variant=unique()),
                "description": assets.description_path(f"# {name}", files_dir),
            },
        )
        assert response.status_code == 201, response.text
        keys.append(response.json()["pkhash"])

    query = query_string([f"algo:name:{names[0]}", "OR", f"algo:name:{names[1]}"])
    groups = api.get(f"/algo/?{query}").json()
    assert [[item["key"] for item in group] for group in groups] == [[keys[0]], [keys[1]]]
    assert api.get(f"/algo/?{query_string(['algo:name:nothing-like-it'])}").json() == [[]]

    assert_json_error(api.get("/algo/?search=not-a-filter"), 400)


def test_data_samples_upload_list_and_conflicts(api, files_dir, tmp_path):
    dataset = add_dataset(api, files_dir)
    # one sample: part "path"
    folder = assets.make_sample_folders(tmp_path / "one", 1, seed=unique())[0]
    archive = assets.archive_bytes({"data.csv": (folder / "data.csv").read_bytes()}, "tar.gz")
    meta = json.dumps({"data_manager_keys": [dataset], "test_only": False})
    response = api.post("/data_sample/", data={"json": meta}, files={"path": ("path", archive)})
    assert response.status_code == 201, response.text
    [created] = response.json()
    assert set(created) == {"pkhash", "path", "validated"}
    assert created["validated"] is True

    # several samples: one part per folder leaf name, zip archives
    keys = add_samples(api, tmp_path / "many", dataset, 3)
    assert len(set(keys)) == 3

    listed = api.get("/data_sample/").json()
    assert isinstance(listed, list) and all(isinstance(item, dict) for item in listed)
    by_key = {item["key"]: item for item in listed}
    assert {created["pkhash"], *keys} <= set(by_key)
    assert by_key[keys[0]]["dataManagerKeys"] == [dataset]
    # search is ignored by the data sample list
    assert api.get(f"/data_sample/?{query_string(['algo:name:x'])}").json() == listed

    # the same content again: 409 with the list of keys
    again = api.post("/data_sample/", data={"json": meta}, files={"path": ("path", archive)})
    assert assert_json_error(again, 409)["pkhash"] == [created["pkhash"]]

    dataset_shape = api.get(f"/data_manager/{dataset}/").json()
    assert set(dataset_shape["trainDataSampleKeys"]) == {created["pkhash"], *keys}


def test_link_dataset_with_samples_and_objective(api, files_dir, tmp_path):
    first = add_dataset(api, files_dir)
    second = add_dataset(api, files_dir)
    keys = add_samples(api, tmp_path, first, 2)
    form = {"data_manager_keys": [second], "data_sample_keys": keys}
    response = api.post("/data_sample/bulk_update/", data=form)
    assert response.status_code == 200, response.text
    assert response.json() == {"keys": keys}
    assert set(api.get(f"/data_manager/{second}/").json()["trainDataSampleKeys"]) == set(keys)

    objective = add_objective(api, files_dir)
    response = api.post(f"/data_manager/{second}/update_ledger/", data={"objective_key": objective})
    assert response.status_code == 200, response.text
    assert response.json() == {"pkhash": second}
    assert api.get(f"/data_manager/{second}/").json()["objectiveKey"] == objective

    assert_json_error(api.post(f"/data_manager/{second}/update_ledger/", data={}), 400)
    assert_json_error(api.post("/data_sample/bulk_update/", data={"data_sample_keys": keys}), 400)
    unknown = {"data_manager_keys": [UNKNOWN_KEY], "data_sample_keys": keys}
    assert api.post("/data_sample/bulk_update/", data=unknown).status_code in (400, 404)


def test_local_false_samples_only_inside_a_data_root(api, files_dir, data_root, tmp_path):
    dataset = add_dataset(api, files_dir)
    inside = assets.make_sample_folders(data_root / f"set{unique()}", 3, seed=unique())
    outside = assets.make_sample_folders(tmp_path / "outside", 1, seed=unique())[0]

    body = {"data_manager_keys": [dataset], "test_only": False}
    response = api.post("/data_sample/", json={**body, "path": str(inside[0])})
    assert response.status_code == 201, response.text
    assert len(response.json()) == 1

    response = api.post("/data_sample/", json={**body, "paths": [str(inside[1])]})
    assert response.status_code == 201, response.text

    refused = api.post("/data_sample/", json={**body, "path": str(outside)})
    message = assert_json_error(refused, 403)["message"]
    assert "data root" in message.lower() or "data_root" in message.lower()
    # a path that climbs out of the root is outside too
    sneaky = str(data_root / ".." / outside.relative_to(tmp_path.parent))
    assert api.post("/data_sample/", json={**body, "path": sneaky}).status_code in (400, 403)


def test_local_false_multiple_registers_each_sub_folder(api, files_dir, data_root):
    dataset = add_dataset(api, files_dir)
    parent = data_root / f"parent{unique()}"
    assets.make_sample_folders(parent, 3, seed=unique())
    body = {"data_manager_keys": [dataset], "test_only": False}
    response = api.post("/data_sample/", json={**body, "paths": [str(parent)], "multiple": True})
    assert response.status_code == 201, response.text
    assert len(response.json()) == 3


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe", "application/json"),
    ],
    ids=["syntax", "array", "empty", "not-utf8"],
)
@pytest.mark.parametrize("path", ["/traintuple/", "/compute_plan/", "/data_sample/"])
def test_bad_json_bodies_are_400(api, path, body, content_type):
    response = api.post(path, data=body, headers={"Content-Type": content_type})
    assert_json_error(response, 400)


def test_json_data_sample_without_path_is_400(api):
    body = {"data_manager_keys": [UNKNOWN_KEY], "test_only": False}
    assert "path" in assert_json_error(api.post("/data_sample/", json=body), 400)["message"]


def test_wrong_multipart_bodies_are_400_naming_the_problem(api, files_dir, tmp_path):
    opener = assets.opener_path()
    description = assets.description_path("# x", files_dir)
    meta = json.dumps({"name": "x", "type": "csv", "permissions": PERMISSIONS})

    def post(data, files, path="/data_manager/"):
        return api.post(path, data=data, files={k: open(v, "rb") for k, v in files.items()})

    cases = [
        (post({}, {"data_opener": opener, "description": description}), "json"),
        (post({"json": "{oops"}, {"data_opener": opener, "description": description}), "json"),
        (post({"json": "[]"}, {"data_opener": opener, "description": description}), "json"),
        (post({"json": meta}, {"data_opener": opener}), "description"),
        (
            post({"json": meta}, {"data_opener": opener, "description": description, "x": opener}),
            "x",
        ),
        (post({"json": meta}, {"file": opener, "description": description}, "/algo/"), "file"),
        (api.post("/algo/", json={"name": "x"}), "multipart"),
        (api.post("/data_sample/", data={"json": "{}"}), "archive"),
        (api.post("/data_sample/", files={"json": (None, "{}")}), "archive"),
    ]
    for response, word in cases:
        message = assert_json_error(response, 400)["message"]
        assert word in message, message

    meta_samples = json.dumps({"data_manager_keys": [UNKNOWN_KEY], "test_only": False})
    # multipart without the json field but with a sample part
    no_json = api.post("/data_sample/", files={"path": ("path", b"PK")})
    assert "json" in assert_json_error(no_json, 400)["message"]
    # a truncated multipart body
    broken = api.post(
        "/data_sample/",
        data=b'--xyz\r\nContent-Disposition: form-data; name="json"\r\n\r\n'
        + meta_samples.encode(),
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert 400 <= broken.status_code < 500
    assert broken.json()["message"]


def test_a_sample_archive_that_is_not_an_archive_is_400(api, files_dir):
    dataset = add_dataset(api, files_dir)
    meta = json.dumps({"data_manager_keys": [dataset], "test_only": False})
    response = api.post(
        "/data_sample/", data={"json": meta}, files={"path": ("path", b"this is not an archive")}
    )
    assert_json_error(response, 400)


def test_leaderboard_sort_validation(api, files_dir):
    objective = add_objective(api, files_dir)
    response = api.get(f"/objective/{objective}/leaderboard/?sort=asc")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["objective"]["key"] == objective
    assert body["testtuples"] == []
    assert_json_error(api.get(f"/objective/{objective}/leaderboard/?sort=sideways"), 400)
    assert_json_error(api.get(f"/objective/{UNKNOWN_KEY}/leaderboard/"), 404)


def test_a_redirect_for_a_missing_trailing_slash(api):
    response = api.get("/node", allow_redirects=False)
    assert response.status_code == 308
    assert response.headers["Location"].endswith("/node/")


def test_concurrent_creates_and_reads(api, files_dir):
    archives = [
        (assets.make_algo_archive("algo", files_dir, variant=unique()), unique()) for _ in range(12)
    ]

    def create(item):
        archive, n = item
        return api.create(
            "/algo/",
            {"name": f"concurrent-{n}", "permissions": PERMISSIONS},
            {"file": archive, "description": assets.description_path(f"# c{n}", files_dir)},
        )

    def read(_):
        return api.get("/algo/")

    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(create, archives))
        reads = list(pool.map(read, range(12)))
    assert [r.status_code for r in created] == [201] * 12, [r.text for r in created]
    assert [r.status_code for r in reads] == [200] * 12
    listed = {a["key"] for a in api.get("/algo/").json()[0]}
    assert {r.json()["pkhash"] for r in created} <= listed
