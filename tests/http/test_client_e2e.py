"""Every call of the reference document through ``substra_worker.Client`` against a node process.

The tests of this module run in order and build on one another's assets (as a
user's session would), on a node of their own.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest

import substra_worker
from substra_worker.sdk import exceptions
from tests import assets
from tests.support.node_process import start_node

PERMISSIONS = {"public": True, "authorized_ids": []}
FINAL = ("done", "failed", "canceled")


def wait(get, key, timeout=60.0):
    """Poll ``get(key)`` until its status is final."""
    deadline = time.monotonic() + timeout
    while True:
        asset = get(key)
        if asset["status"] in FINAL or time.monotonic() > deadline:
            return asset
        time.sleep(0.2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A node with a data root, a logged-in client, and folders for files."""
    base = tmp_path_factory.mktemp("e2e")
    data_root = base / "data-root"
    data_root.mkdir()
    node = start_node(base / "state", data_roots=[data_root])
    client = substra_worker.Client(url=node.url, token=node.token, retry_timeout=0)
    state = {"node": node, "client": client, "base": base, "data_root": data_root}
    yield state
    client.close()
    node.stop()


@pytest.fixture(scope="module")
def client(world):
    return world["client"]


def test_login_and_bad_credentials(world):
    anonymous = substra_worker.Client(url=world["node"].url)
    with pytest.raises(exceptions.AuthenticationError):
        anonymous.list_node()
    token = anonymous.login("admin", "admin")
    assert isinstance(token, str) and token
    assert anonymous.list_node() == [{"id": "MyOrg1MSP", "isCurrent": True}]
    with pytest.raises(exceptions.BadLoginException):
        anonymous.login("admin", "wrong")
    anonymous.close()

    forged = substra_worker.Client(url=world["node"].url, token="f" * 40)
    with pytest.raises(exceptions.AuthenticationError):
        forged.list_algo()
    forged.close()


def test_datasets(world, client):
    base = world["base"]
    opener = assets.opener_path(base, variant=1)
    data = {
        "name": "train set",
        "description": str(assets.description_path("# Train set\n\nWith ü.\n", base)),
        "type": "csv",
        "data_opener": str(opener),
        "permissions": PERMISSIONS,
        "metadata": {"origin": "e2e"},
    }
    dataset = client.add_dataset(data)
    assert dataset["name"] == "train set"
    assert dataset["opener"]["storageAddress"].startswith(world["node"].url + "/")
    world["dataset"] = dataset["key"]

    with pytest.raises(exceptions.AlreadyExists) as conflict:
        client.add_dataset(data)
    assert conflict.value.pkhash == dataset["key"]
    assert client.add_dataset(data, exist_ok=True)["key"] == dataset["key"]

    other = client.add_dataset(
        {**data, "name": "other set", "data_opener": str(assets.opener_path(base, variant=2))}
    )
    world["other_dataset"] = other["key"]

    assert client.get_dataset(dataset["key"])["metadata"] == {"origin": "e2e"}
    assert {d["key"] for d in client.list_dataset()} == {dataset["key"], other["key"]}
    assert [d["key"] for d in client.list_dataset(["dataset:name:train set"])] == [dataset["key"]]
    both = client.list_dataset(["dataset:name:train set", "OR", "dataset:name:other set"])
    assert {d["key"] for d in both} == {dataset["key"], other["key"]}
    assert client.describe_dataset(dataset["key"]) == "# Train set\n\nWith ü.\n"
    path = client.download_dataset(dataset["key"], base / "download")
    assert Path(path).name == "opener.py"
    assert Path(path).read_bytes() == opener.read_bytes()


def test_data_samples(world, client, tmp_path):
    dataset = world["dataset"]
    train = assets.make_sample_folders(tmp_path / "train", 3, seed=1)
    test = assets.make_sample_folders(tmp_path / "test", 2, test=True, seed=1)

    single = client.add_data_sample(
        {"path": str(train[0]), "data_manager_keys": [dataset], "test_only": False}
    )
    assert set(single) == {"pkhash", "path", "validated"}
    again = client.add_data_sample(
        {"path": str(train[0]), "data_manager_keys": [dataset], "test_only": False}, exist_ok=True
    )
    assert again == {"pkhash": single["pkhash"]}
    with pytest.raises(exceptions.AlreadyExists):
        client.add_data_sample(
            {"path": str(train[0]), "data_manager_keys": [dataset], "test_only": False}
        )

    many = client.add_data_samples(
        {"paths": [str(p) for p in train[1:]], "data_manager_keys": [dataset], "test_only": False}
    )
    assert len(many) == 2
    tests = client.add_data_samples(
        {"paths": [str(p) for p in test], "data_manager_keys": [dataset], "test_only": True}
    )
    world["train"] = [single["pkhash"]] + [s["pkhash"] for s in many]
    world["test"] = [s["pkhash"] for s in tests]

    # server-side folders: inside the data root only
    remote = assets.make_sample_folders(world["data_root"] / "remote", 2, seed=2)
    server_side = client.add_data_samples(
        {"paths": [str(p) for p in remote], "data_manager_keys": [dataset], "test_only": False},
        local=False,
    )
    assert len(server_side) == 2
    outside = assets.make_sample_folders(tmp_path / "outside", 1, seed=3)[0]
    with pytest.raises(exceptions.AuthorizationError):
        client.add_data_sample(
            {"path": str(outside), "data_manager_keys": [dataset], "test_only": False},
            local=False,
        )

    listed = {s["key"]: s for s in client.list_data_sample()}
    assert set(world["train"] + world["test"]) <= set(listed)
    assert listed[world["train"][0]]["dataManagerKeys"] == [dataset]

    client.link_dataset_with_data_samples(world["other_dataset"], world["train"])
    other = client.get_dataset(world["other_dataset"])
    assert set(other["trainDataSampleKeys"]) == set(world["train"])
    shape = client.get_dataset(dataset)
    assert set(shape["testDataSampleKeys"]) == set(world["test"])


def test_objective(world, client):
    base = world["base"]
    metrics = assets.metrics_archive(base)
    objective = client.add_objective(
        {
            "name": "least squares",
            "description": str(assets.description_path("# Objective\n", base)),
            "metrics_name": assets.METRICS_NAME,
            "metrics": str(metrics),
            "test_data_manager_key": world["dataset"],
            "test_data_sample_keys": world["test"],
            "permissions": PERMISSIONS,
        }
    )
    world["objective"] = objective["key"]
    assert objective["testDataset"]["dataManagerKey"] == world["dataset"]
    assert client.describe_objective(objective["key"]) == "# Objective\n"
    path = client.download_objective(objective["key"], base / "download")
    assert Path(path).name == "metrics.zip"
    assert zipfile.is_zipfile(path)
    assert [o["key"] for o in client.list_objective(["objective:name:least squares"])] == [
        objective["key"]
    ]

    client.link_dataset_with_objective(world["other_dataset"], objective["key"])
    assert client.get_dataset(world["other_dataset"])["objectiveKey"] == objective["key"]


@pytest.mark.parametrize("kind", ["algo", "aggregate_algo", "composite_algo"])
def test_algos(world, client, kind):
    base = world["base"]
    archive = assets.make_algo_archive(kind, base)
    data = {
        "name": f"my {kind}",
        "description": str(assets.description_path(f"# {kind}\n", base)),
        "file": str(archive),
        "permissions": PERMISSIONS,
    }
    add = getattr(client, f"add_{kind}")
    algo = add(data)
    world[kind] = algo["key"]
    assert algo["name"] == f"my {kind}"
    assert add(data, exist_ok=True)["key"] == algo["key"]
    assert getattr(client, f"get_{kind}")(algo["key"])["key"] == algo["key"]
    assert [a["key"] for a in getattr(client, f"list_{kind}")()] == [algo["key"]]
    assert getattr(client, f"describe_{kind}")(algo["key"]) == f"# {kind}\n"
    path = getattr(client, f"download_{kind}")(algo["key"], base / "download")
    assert Path(path).name == f"{kind}.tar.gz"
    assert Path(path).read_bytes() == archive.read_bytes()


def test_tuples_run_asynchronously_and_fill_the_leaderboard(world, client):
    train = client.add_traintuple(
        {
            "algo_key": world["algo"],
            "data_manager_key": world["dataset"],
            "train_data_sample_keys": world["train"],
            "tag": "first",
        }
    )
    assert train["status"] in ("todo", "doing", "done")
    with pytest.raises(exceptions.AlreadyExists):
        client.add_traintuple(
            {
                "algo_key": world["algo"],
                "data_manager_key": world["dataset"],
                "train_data_sample_keys": world["train"],
                "tag": "first",
            }
        )
    train = wait(client.get_traintuple, train["key"])
    assert train["status"] == "done", train["log"]

    composite = client.add_composite_traintuple(
        {
            "algo_key": world["composite_algo"],
            "data_manager_key": world["dataset"],
            "train_data_sample_keys": world["train"],
            "out_trunk_model_permissions": {"authorized_ids": []},
        }
    )
    composite = wait(client.get_composite_traintuple, composite["key"])
    assert composite["status"] == "done", composite["log"]

    aggregate = client.add_aggregatetuple(
        {
            "algo_key": world["aggregate_algo"],
            "in_models_keys": [train["key"], composite["key"]],
            "worker": "MyOrg1MSP",
        }
    )
    aggregate = wait(client.get_aggregatetuple, aggregate["key"])
    assert aggregate["status"] == "done", aggregate["log"]

    test = client.add_testtuple(
        {"objective_key": world["objective"], "traintuple_key": train["key"]}
    )
    test = wait(client.get_testtuple, test["key"])
    assert test["status"] == "done", test["log"]
    assert test["certified"] is True

    second = client.add_traintuple(
        {
            "algo_key": world["algo"],
            "data_manager_key": world["dataset"],
            "train_data_sample_keys": world["train"][:1],
            "in_models_keys": [train["key"]],
            "tag": "second",
        }
    )
    wait(client.get_traintuple, second["key"])
    second_test = client.add_testtuple(
        {"objective_key": world["objective"], "traintuple_key": second["key"]}
    )
    second_test = wait(client.get_testtuple, second_test["key"])
    assert second_test["status"] == "done"

    desc = client.leaderboard(world["objective"])
    perfs = [t["perf"] for t in desc["testtuples"]]
    assert len(perfs) == 2 and perfs == sorted(perfs, reverse=True)
    assert desc["objective"]["key"] == world["objective"]
    asc = client.leaderboard(world["objective"], sort="asc")
    assert [t["perf"] for t in asc["testtuples"]] == sorted(perfs)

    assert {t["key"] for t in client.list_traintuple()} >= {train["key"], second["key"]}
    assert [t["key"] for t in client.list_traintuple(["traintuple:tag:second"])] == [second["key"]]
    assert {t["key"] for t in client.list_testtuple()} == {test["key"], second_test["key"]}
    assert [t["key"] for t in client.list_aggregatetuple()] == [aggregate["key"]]
    assert [t["key"] for t in client.list_composite_traintuple()] == [composite["key"]]


def test_compute_plan_runs_to_done_then_is_updated(world, client):
    plan = client.add_compute_plan(
        {
            "traintuples": [
                {
                    "traintuple_id": "t1",
                    "algo_key": world["algo"],
                    "data_manager_key": world["dataset"],
                    "train_data_sample_keys": world["train"][:2],
                },
            ],
            "composite_traintuples": [
                {
                    "composite_traintuple_id": "c1",
                    "algo_key": world["composite_algo"],
                    "data_manager_key": world["dataset"],
                    "train_data_sample_keys": world["train"][2:],
                    "out_trunk_model_permissions": {"authorized_ids": []},
                }
            ],
            "aggregatetuples": [
                {
                    "aggregatetuple_id": "a1",
                    "algo_key": world["aggregate_algo"],
                    "worker": "MyOrg1MSP",
                    "in_models_ids": ["t1", "c1"],
                }
            ],
            "testtuples": [
                {
                    "objective_key": world["objective"],
                    "data_manager_key": world["dataset"],
                    "test_data_sample_keys": world["test"],
                    "traintuple_id": "t1",
                }
            ],
            "clean_models": False,
            "tag": "plan",
            "metadata": {"run": "1"},
        }
    )
    plan_id = plan["computePlanID"]
    assert plan["tupleCount"] == 4
    assert set(plan["IDToKey"]) == {"t1", "c1", "a1"}

    done = wait(client.get_compute_plan, plan_id)
    assert done["status"] == "done", done
    assert done["doneCount"] == 4

    updated = client.update_compute_plan(
        plan_id,
        {
            "traintuples": [
                {
                    "traintuple_id": "t2",
                    "algo_key": world["algo"],
                    "data_manager_key": world["dataset"],
                    "train_data_sample_keys": world["train"],
                    "in_models_ids": ["t1"],
                }
            ]
        },
    )
    assert updated["tupleCount"] == 5
    assert wait(client.get_compute_plan, plan_id)["status"] == "done"
    assert plan_id in [p["computePlanID"] for p in client.list_compute_plan()]


def test_cancel_compute_plan(world, client):
    sleeping = client.add_algo(
        {
            "name": "sleeper",
            "description": str(assets.description_path("# sleeper\n", world["base"])),
            "file": str(assets.make_algo_archive("sleeping_algo", world["base"], sleep=30)),
            "permissions": PERMISSIONS,
        }
    )
    plan = client.add_compute_plan(
        {
            "traintuples": [
                {
                    "traintuple_id": "s1",
                    "algo_key": sleeping["key"],
                    "data_manager_key": world["dataset"],
                    "train_data_sample_keys": world["train"],
                },
                {
                    "traintuple_id": "s2",
                    "algo_key": sleeping["key"],
                    "data_manager_key": world["dataset"],
                    "train_data_sample_keys": world["train"],
                    "in_models_ids": ["s1"],
                },
            ]
        }
    )
    first = plan["IDToKey"]["s1"]
    deadline = time.monotonic() + 30
    while client.get_traintuple(first)["status"] != "doing" and time.monotonic() < deadline:
        time.sleep(0.2)
    canceled = client.cancel_compute_plan(plan["computePlanID"])
    assert canceled["status"] == "canceled"
    assert wait(client.get_traintuple, first, timeout=20)["status"] == "canceled"
    assert client.get_traintuple(plan["IDToKey"]["s2"])["status"] == "canceled"


def test_errors_through_the_client(client):
    with pytest.raises(exceptions.NotFound):
        client.get_algo("ab" * 32)
    with pytest.raises(exceptions.InvalidRequest):
        client.leaderboard("not-a-key")
    with pytest.raises(exceptions.InvalidRequest):
        client.add_traintuple(
            {
                "algo_key": "ab" * 32,
                "data_manager_key": "cd" * 32,
                "train_data_sample_keys": ["ef" * 32],
            }
        )
