"""The whole reference workflow in debug mode, and every read/link call around it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from substra_worker import Client
from substra_worker.node import keys
from substra_worker.sdk import exceptions
from substra_worker.sdk.debug import DebugBackend
from substra_worker.settings import Settings
from tests import assets
from tests.node.conftest import PUBLIC, World, make_world, node_of, sha256_file


def test_dataset_samples_objective_algo_traintuple_testtuple_leaderboard(
    client: Client, world: World, tmp_path: Path
):
    # Given a dataset with train and test samples, an objective testing on them, an algo
    algo = world.algo(client, "algo")
    dataset = client.get_dataset(world.dataset["key"])
    assert dataset["trainDataSampleKeys"] == world.train_keys
    assert dataset["testDataSampleKeys"] == world.test_keys
    assert dataset["objectiveKey"] == world.objective["key"]  # the test dataset is linked

    # When a traintuple is added (without in_models_keys: bug 4 of the original debug mode)
    traintuple = client.add_traintuple(
        {
            "algo_key": algo["key"],
            "data_manager_key": dataset["key"],
            "train_data_sample_keys": world.train_keys,
            "tag": "first",
            "metadata": {"run": "1"},
        }
    )

    # Then it ran before the call returned, and its model is the sha256 of the model file
    assert traintuple["status"] == "done"
    assert traintuple["rank"] == 0
    assert traintuple["inModels"] is None
    assert traintuple["tag"] == "first" and traintuple["metadata"] == {"run": "1"}
    assert traintuple["creator"] == "MyOrg1MSP"
    assert traintuple["computePlanID"] == ""
    assert traintuple["dataset"] == {
        "worker": "MyOrg1MSP",
        "keys": world.train_keys,
        "openerHash": dataset["key"],
        "metadata": {"origin": "tests"},
    }
    assert traintuple["algo"] == {
        "name": algo["name"],
        "hash": algo["key"],
        "storageAddress": f"/algo/{algo['key']}/file/",
    }
    model_hash = traintuple["outModel"]["hash"]
    assert traintuple["outModel"]["storageAddress"] == f"/model/{model_hash}/file/"
    model_file = node_of(client).file_path("model", model_hash, "model")
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == model_hash
    assert "trained on 15 points" in traintuple["log"]

    # When a testtuple on the objective's test data is added
    testtuple = client.add_testtuple(
        {"objective_key": world.objective["key"], "traintuple_key": traintuple["key"], "tag": "t"}
    )

    # Then it is done, certified, scored, and on the leaderboard
    assert testtuple["status"] == "done"
    assert testtuple["certified"] is True
    assert testtuple["traintupleType"] == "traintuple"
    assert testtuple["dataset"]["keys"] == world.test_keys
    perf = testtuple["dataset"]["perf"]
    assert isinstance(perf, float) and -1.0 < perf <= 0.0
    assert testtuple["objective"]["hash"] == world.objective["key"]
    assert testtuple["objective"]["metrics"]["hash"] == world.objective["metrics"]["hash"]

    board = client.leaderboard(world.objective["key"])
    assert board["objective"] == client.get_objective(world.objective["key"])
    assert board["testtuples"] == [
        {
            "algo": traintuple["algo"],
            "creator": "MyOrg1MSP",
            "key": testtuple["key"],
            "traintupleKey": traintuple["key"],
            "perf": perf,
            "tag": "t",
        }
    ]


def test_leaderboard_sorts_certified_testtuples_only(
    client: Client, world: World, traintuple_input
):
    # Given two traintuples (different data: a worse fit) and three testtuples on them,
    # one on the train samples (not certified)
    good = client.add_traintuple(traintuple_input())
    worse = client.add_traintuple(traintuple_input(train_data_sample_keys=world.train_keys[:1]))
    tested = [
        client.add_testtuple({"objective_key": world.objective["key"], "traintuple_key": t["key"]})
        for t in (good, worse)
    ]
    uncertified = client.add_testtuple(
        {
            "objective_key": world.objective["key"],
            "traintuple_key": good["key"],
            "data_manager_key": world.dataset["key"],
            "test_data_sample_keys": world.test_keys[:1],
        }
    )
    assert uncertified["certified"] is False and uncertified["status"] == "done"
    perfs = {t["key"]: t["dataset"]["perf"] for t in tested}

    # Then desc (default) and asc give opposite orders, without the uncertified one
    desc = [e["key"] for e in client.leaderboard(world.objective["key"])["testtuples"]]
    asc = [e["key"] for e in client.leaderboard(world.objective["key"], sort="asc")["testtuples"]]
    assert sorted(desc) == sorted(perfs)
    assert desc == sorted(perfs, key=perfs.get, reverse=True)
    assert asc == list(reversed(desc))
    with pytest.raises(exceptions.NotFound):
        client.leaderboard("0" * 64)


def test_describe_download_and_links(client: Client, world: World, tmp_path: Path):
    algo = world.algo(client, "algo")
    aggregate = world.algo(client, "aggregate_algo")
    composite = world.algo(client, "composite_algo")

    assert client.describe_dataset(world.dataset["key"]) == "the linear dataset"
    assert client.describe_objective(world.objective["key"]) == "the objective"
    assert client.describe_algo(algo["key"]) == "algo algo"
    assert client.describe_aggregate_algo(aggregate["key"]) == "algo aggregate_algo"
    assert client.describe_composite_algo(composite["key"]) == "algo composite_algo"

    out = tmp_path / "downloads"
    opener = Path(client.download_dataset(world.dataset["key"], out))
    assert opener == out / "opener.py"
    assert opener.read_bytes() == assets.opener_path().read_bytes()
    metrics = Path(client.download_objective(world.objective["key"], out))
    assert metrics.name == "metrics.zip"  # bug 7: not metrics.py
    assert sha256_file(metrics) == world.objective["metrics"]["hash"]
    for download, asset, name in (
        (client.download_algo, algo, "algo.tar.gz"),
        (client.download_aggregate_algo, aggregate, "aggregate_algo.tar.gz"),
        (client.download_composite_algo, composite, "composite_algo.tar.gz"),
    ):
        path = Path(download(asset["key"], out))
        assert path.name == name and sha256_file(path) == asset["key"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "opener.py",
            "metrics.zip",
            "algo.tar.gz",
            "aggregate_algo.tar.gz",
            "composite_algo.tar.gz",
        ]
    )  # no temporary file left behind
    with pytest.raises(exceptions.NotFound):
        client.download_algo("f" * 64, out)
    with pytest.raises(exceptions.NotFound):
        client.describe_algo(aggregate["key"])  # an aggregate algo is not an algo

    # links: a second dataset gets linked to the objective and to existing samples
    other = client.add_dataset(
        {
            "name": "other",
            "type": "csv",
            "data_opener": str(assets.opener_path(tmp_path, variant=1)),
            "description": str(assets.description_path("other dataset", tmp_path)),
            "permissions": PUBLIC,
        }
    )
    assert other["objectiveKey"] == "" and other["trainDataSampleKeys"] == []
    answer = client.link_dataset_with_objective(other["key"], world.objective["key"])
    assert answer == {"pkhash": other["key"]}
    answer = client.link_dataset_with_data_samples(other["key"], world.train_keys + world.test_keys)
    assert answer == {"keys": world.train_keys + world.test_keys}
    linked = client.get_dataset(other["key"])
    assert linked["objectiveKey"] == world.objective["key"]
    assert linked["trainDataSampleKeys"] == world.train_keys
    assert linked["testDataSampleKeys"] == world.test_keys
    samples = {s["key"]: s for s in client.list_data_sample()}
    assert samples[world.train_keys[0]]["dataManagerKeys"] == [world.dataset["key"], other["key"]]
    assert samples[world.train_keys[0]]["owner"] == "MyOrg1MSP"
    with pytest.raises(exceptions.InvalidRequest):
        client.link_dataset_with_data_samples(other["key"], ["a" * 64])
    with pytest.raises(exceptions.NotFound):
        client.link_dataset_with_objective("b" * 64, world.objective["key"])


def test_already_exists_and_exist_ok(
    client: Client, world: World, tmp_path: Path, traintuple_input
):
    algo = world.algo(client, "algo")
    archive = assets.make_algo_archive("algo", tmp_path / "archives")
    data = {
        "name": "again",
        "file": str(archive),
        "description": str(assets.description_path("another text", tmp_path)),
        "permissions": PUBLIC,
    }
    with pytest.raises(exceptions.AlreadyExists) as info:
        client.add_algo(data)
    assert info.value.pkhash == algo["key"]
    assert client.add_algo(data, exist_ok=True) == client.get_algo(algo["key"])

    dataset_data = {
        "name": "dup",
        "type": "csv",
        "data_opener": str(assets.opener_path()),
        "description": str(assets.description_path("x", tmp_path)),
        "permissions": PUBLIC,
    }
    with pytest.raises(exceptions.AlreadyExists) as info:
        client.add_dataset(dataset_data)
    assert info.value.pkhash == world.dataset["key"]
    assert client.add_dataset(dataset_data, exist_ok=True)["key"] == world.dataset["key"]

    # a single data sample: exist_ok answers {"pkhash"}; several: the keys listed
    folder = tmp_path / "train" / "sample0"
    one = {"path": str(folder), "data_manager_keys": [world.dataset["key"]]}
    with pytest.raises(exceptions.AlreadyExists) as info:
        client.add_data_sample(one)
    assert info.value.pkhash == [world.train_keys[0]]
    assert client.add_data_sample(one, exist_ok=True) == {"pkhash": world.train_keys[0]}
    new = assets.make_sample_folders(tmp_path / "new", 1, seed=9)[0]
    with pytest.raises(exceptions.AlreadyExists) as info:
        client.add_data_samples(
            {"paths": [str(new), str(folder)], "data_manager_keys": [world.dataset["key"]]}
        )
    assert info.value.pkhash == [world.train_keys[0]]
    # all or nothing: the new folder was not registered
    assert len(client.list_data_sample()) == len(world.train_keys) + len(world.test_keys)

    # tuples: same inputs, same key
    traintuple = client.add_traintuple(traintuple_input())
    with pytest.raises(exceptions.AlreadyExists) as info:
        client.add_traintuple(traintuple_input(tag="another tag"))
    assert info.value.pkhash == traintuple["key"]
    assert client.add_traintuple(traintuple_input(), exist_ok=True) == traintuple
    testtuple = {"objective_key": world.objective["key"], "traintuple_key": traintuple["key"]}
    first = client.add_testtuple(testtuple)
    # the same certified testtuple, spelled with its explicit test dataset
    explicit = dict(
        testtuple,
        data_manager_key=world.dataset["key"],
        test_data_sample_keys=list(reversed(world.test_keys)),
    )
    with pytest.raises(exceptions.AlreadyExists) as info:
        client.add_testtuple(explicit)
    assert info.value.pkhash == first["key"]
    assert client.add_testtuple(explicit, exist_ok=True) == first


def test_refusals(client: Client, world: World, tmp_path: Path, traintuple_input):
    with pytest.raises(exceptions.InvalidRequest):
        client.get_algo("not-a-key")
    with pytest.raises(exceptions.NotFound):
        client.get_traintuple("c" * 64)
    with pytest.raises(exceptions.NotFound):
        client.get_compute_plan("d" * 64)
    with pytest.raises(exceptions.InvalidRequest, match="algo_key"):
        client.add_traintuple(traintuple_input(algo_key="e" * 64))
    with pytest.raises(exceptions.InvalidRequest, match="test-only"):
        client.add_traintuple(traintuple_input(train_data_sample_keys=world.test_keys))
    with pytest.raises(exceptions.InvalidRequest, match="in_models_keys"):
        client.add_traintuple(traintuple_input(in_models_keys=["f" * 64]))
    with pytest.raises(exceptions.InvalidRequest):
        client.add_dataset(
            {
                "name": "bad objective",
                "type": "csv",
                "data_opener": str(assets.opener_path(tmp_path, variant=3)),
                "description": str(assets.description_path("y", tmp_path)),
                "objective_key": "0" * 64,
                "permissions": PUBLIC,
            }
        )
    # an archive whose Dockerfile names no script is refused at upload time
    bad = tmp_path / "bad.zip"
    bad.write_bytes(assets.archive_bytes({"Dockerfile": b"FROM x\n", "algo.py": b""}, "zip"))
    with pytest.raises(exceptions.InvalidRequest, match="ENTRYPOINT"):
        client.add_algo(
            {
                "name": "bad",
                "file": str(bad),
                "description": str(assets.description_path("bad algo", tmp_path)),
                "permissions": PUBLIC,
            }
        )
    assert "bad" not in [a["name"] for a in client.list_algo()]
    with pytest.raises(ValueError):
        client.list_algo("algo:name:x")  # filters must be a list


def test_lists_and_filters(client: Client, world: World, traintuple_input):
    algo = world.algo(client, "algo")
    composite = world.algo(client, "composite_algo")
    first = client.add_traintuple(traintuple_input(tag="a"))
    second = client.add_traintuple(traintuple_input(tag="b", in_models_keys=[first["key"]]))
    assert second["rank"] == 1
    assert second["inModels"] == [
        {
            "traintupleKey": first["key"],
            "hash": first["outModel"]["hash"],
            "storageAddress": first["outModel"]["storageAddress"],
        }
    ]
    plan = client.add_compute_plan(
        {
            "traintuples": [
                {
                    "traintuple_id": "t",
                    "algo_key": algo["key"],
                    "data_manager_key": world.dataset["key"],
                    "train_data_sample_keys": world.train_keys,
                }
            ],
            "tag": "plan",
            "metadata": {"job": "job-42"},
        }
    )

    keys = lambda items: [i["key"] for i in items]  # noqa: E731
    assert keys(client.list_traintuple()) == [
        first["key"],
        second["key"],
        plan["traintupleKeys"][0],
    ]
    assert keys(client.list_traintuple(["traintuple:tag:b"])) == [second["key"]]
    assert keys(client.list_traintuple(["traintuple:tag:a", "OR", "traintuple:tag:b"])) == [
        first["key"],
        second["key"],
    ]
    assert keys(client.list_traintuple(["traintuple:status:done", "traintuple:rank:1"])) == [
        second["key"]
    ]
    assert client.list_traintuple(["traintuple:tag:nothing"]) == []
    assert keys(client.list_traintuple([f"traintuple:computePlanID:{plan['computePlanID']}"])) == [
        plan["traintupleKeys"][0]
    ]
    # cross-asset filters, as the real node allows them
    assert len(client.list_traintuple([f"algo:name:{algo['name']}"])) == 3
    assert client.list_traintuple([f"composite_algo:name:{composite['name']}"]) == []
    assert len(client.list_traintuple(["compute_plan:tag:plan"])) == 1
    assert keys(client.list_dataset([f"objective:key:{world.objective['key']}"])) == [
        world.dataset["key"]
    ]
    assert keys(client.list_objective(["dataset:name:linear"])) == [world.objective["key"]]
    # values with ':' and spaces, nested and object fields
    assert keys(client.list_objective(["objective:name:fit a line"])) == [world.objective["key"]]
    assert keys(client.list_objective([f"objective:metrics:{assets.METRICS_NAME}"])) == [
        world.objective["key"]
    ]
    assert keys(client.list_algo([f"algo:name:{algo['name']}"])) == [algo["key"]]
    assert keys(client.list_composite_algo(["composite_algo:owner:MyOrg1MSP"])) == [
        composite["key"]
    ]
    assert keys(client.list_dataset(["dataset:metadata.origin:tests"])) == [world.dataset["key"]]
    plans = client.list_compute_plan(["compute_plan:metadata:job-42"])
    assert [p["computePlanID"] for p in plans] == [plan["computePlanID"]]
    assert plans[0]["metadata"] == {"job": "job-42"}
    assert client.list_compute_plan(["compute_plan:metadata.job:job-41"]) == []
    with pytest.raises(exceptions.InvalidRequest, match="not authorized"):
        client.list_algo(["dataset:name:linear"])
    with pytest.raises(exceptions.InvalidRequest):
        client.list_algo(["nothing:name:x"])
    # data samples: a flat list, filters ignored (as the real node)
    assert len(client.list_data_sample(["data_sample:key:x"])) == 5
    assert client.list_node() == [{"id": "MyOrg1MSP", "isCurrent": True}]
    assert client.login("user", "password") == ""


def test_state_survives_reopening(debug_env, tmp_path: Path):
    # Given a client that registered assets and ran a tuple, then closed
    with Client(debug=True) as first:
        world = make_world(first, tmp_path)
        algo = world.algo(first, "algo")
        traintuple = first.add_traintuple(
            {
                "algo_key": algo["key"],
                "data_manager_key": world.dataset["key"],
                "train_data_sample_keys": world.train_keys,
            }
        )
    # When a new client opens the same state folder
    with Client(debug=True) as second:
        # Then everything is there, with the same shapes, and it can keep computing
        assert second.get_dataset(world.dataset["key"]) == world.dataset
        assert second.get_objective(world.objective["key"]) == world.objective
        assert second.get_algo(algo["key"]) == algo
        assert second.get_traintuple(traintuple["key"]) == traintuple
        assert second.describe_algo(algo["key"]) == "algo algo"
        child = second.add_traintuple(
            {
                "algo_key": algo["key"],
                "data_manager_key": world.dataset["key"],
                "train_data_sample_keys": world.train_keys,
                "in_models_keys": [traintuple["key"]],
            }
        )
        assert child["status"] == "done" and child["rank"] == 1


def test_debug_backend_takes_settings(tmp_path: Path):
    # Given settings built in code (another node id, another state folder)
    settings = Settings.from_env({}, state_dir=tmp_path / "custom").replace(node_id="OtherMSP")
    backend = DebugBackend(settings)
    try:
        assert backend.list_node() == [{"id": "OtherMSP", "isCurrent": True}]
        dataset = backend.add(
            "dataset",
            {
                "name": "d",
                "type": "csv",
                "data_opener": str(assets.opener_path()),
                "description": str(assets.description_path("d", tmp_path)),
                "permissions": PUBLIC,
            },
        )
        assert dataset["owner"] == "OtherMSP"
        assert (tmp_path / "custom" / "node" / "node.db").is_file()
        # local=False in debug mode: the folder is registered where it is, not copied
        folder = assets.make_sample_folders(tmp_path / "in-place", 1, seed=4)[0]
        answer = backend.add(
            "data_sample",
            {"path": str(folder), "data_manager_keys": [dataset["key"]]},
            local=False,
        )
        assert answer["path"] == str(folder.resolve())
        assert answer["pkhash"] == keys.data_sample_key(folder)
    finally:
        backend.close()
