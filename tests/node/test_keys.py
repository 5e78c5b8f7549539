"""Keys equal the real node's formulas, computed independently here with hashlib."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from substra_worker import Client
from substra_worker.node import keys
from substra_worker.sdk import exceptions
from tests import assets
from tests.node.conftest import World, sha256_file

CREATOR = "MyOrg1MSP"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _tuple_key(kind: str, *parts: str) -> str:
    return _sha(kind + "," + ",".join(sorted(p for p in parts if p)))


def _folder_key(folder: Path) -> str:
    digests = sorted(
        hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    )
    return _sha("".join(digests))


def test_vectors():
    # fixed vectors: whoever changes the formulas breaks these
    assert keys.tuple_key("traintuple", ["b", "a", "", None]) == (
        "b5a246c595969d254c8ac6c715f8657938888ed03949e34b225b1fef93a0b5c8"
    )
    assert keys.tuple_key("testtuple", []) == (
        "8894f35c2604d399e0a3c9f47f18b69c383588cc14a2513cce119ade7cdd5e12"
    )
    assert keys.is_key("a" * 64) and not keys.is_key("a" * 63) and not keys.is_key("g" * 64)
    plan_id = keys.new_compute_plan_id()
    assert keys.is_key(plan_id) and plan_id != keys.new_compute_plan_id()


def test_data_sample_key_ignores_names_and_layout(tmp_path: Path):
    one = tmp_path / "one"
    (one / "nested" / "deeper").mkdir(parents=True)
    (one / "a.txt").write_bytes(b"alpha")
    (one / "nested" / "b.bin").write_bytes(bytes(range(256)))
    (one / "nested" / "deeper" / "c").write_bytes(b"")
    two = tmp_path / "two"
    two.mkdir()
    (two / "z").write_bytes(bytes(range(256)))
    (two / "y").write_bytes(b"")
    (two / "x").write_bytes(b"alpha")
    expected = _sha(
        "".join(sorted(hashlib.sha256(d).hexdigest() for d in (b"alpha", bytes(range(256)), b"")))
    )
    assert keys.data_sample_key(one) == expected == _folder_key(one)
    assert keys.data_sample_key(two) == expected


def test_asset_keys_through_the_client(client: Client, world: World, tmp_path: Path):
    # file assets
    assert world.dataset["key"] == sha256_file(assets.opener_path())
    assert world.objective["key"] == hashlib.sha256(b"the objective").hexdigest()
    archive = assets.make_algo_archive("algo", tmp_path / "archives")
    assert world.algo(client, "algo")["key"] == sha256_file(archive)
    # data samples
    folders = sorted((tmp_path / "train").iterdir())
    assert world.train_keys == [_folder_key(f) for f in folders]
    # a copy under another name with renamed files is the same sample
    copy = tmp_path / "renamed"
    copy.mkdir()
    (copy / "other-name.csv").write_bytes((folders[0] / assets.SAMPLE_FILE).read_bytes())
    with pytest.raises(exceptions.AlreadyExists) as info:
        client.add_data_sample({"path": str(copy), "data_manager_keys": [world.dataset["key"]]})
    assert info.value.pkhash == [world.train_keys[0]]


def test_tuple_keys_through_the_client(client: Client, world: World):
    algo = world.algo(client, "algo")["key"]
    aggregate = world.algo(client, "aggregate_algo")["key"]
    composite = world.algo(client, "composite_algo")["key"]
    dm = world.dataset["key"]
    samples = world.train_keys

    train = client.add_traintuple(
        {"algo_key": algo, "data_manager_key": dm, "train_data_sample_keys": samples}
    )
    assert train["key"] == _tuple_key("traintuple", CREATOR, algo, dm, *samples)
    child = client.add_traintuple(
        {
            "algo_key": algo,
            "data_manager_key": dm,
            "train_data_sample_keys": samples[:1],
            "in_models_keys": [train["key"]],
        }
    )
    assert child["key"] == _tuple_key("traintuple", CREATOR, algo, dm, samples[0], train["key"])
    agg = client.add_aggregatetuple(
        {"algo_key": aggregate, "in_models_keys": [train["key"], child["key"]], "worker": CREATOR}
    )
    assert agg["key"] == _tuple_key(
        "aggregatetuple", CREATOR, aggregate, train["key"], child["key"]
    )
    head = client.add_composite_traintuple(
        {
            "algo_key": composite,
            "data_manager_key": dm,
            "train_data_sample_keys": samples,
            "out_trunk_model_permissions": {"authorized_ids": [CREATOR]},
        }
    )
    assert head["key"] == _tuple_key("composite_traintuple", CREATOR, composite, dm, *samples)
    comp = client.add_composite_traintuple(
        {
            "algo_key": composite,
            "data_manager_key": dm,
            "train_data_sample_keys": samples,
            "in_head_model_key": head["key"],
            "in_trunk_model_key": agg["key"],
            "out_trunk_model_permissions": {"authorized_ids": [CREATOR]},
        }
    )
    assert comp["key"] == _tuple_key(
        "composite_traintuple", CREATOR, composite, dm, *samples, head["key"], agg["key"]
    )
    assert comp["rank"] == 3
    objective = world.objective["key"]
    test = client.add_testtuple({"objective_key": objective, "traintuple_key": comp["key"]})
    assert test["key"] == _tuple_key(
        "testtuple", CREATOR, objective, dm, *world.test_keys, comp["key"]
    )
    assert test["status"] == "done" and test["traintupleType"] == "compositeTraintuple"

    # in a compute plan, the plan id is a part of every key
    plan = client.add_compute_plan(
        {
            "traintuples": [
                {
                    "traintuple_id": "root",
                    "algo_key": algo,
                    "data_manager_key": dm,
                    "train_data_sample_keys": samples,
                },
                {
                    "traintuple_id": "leaf",
                    "algo_key": algo,
                    "data_manager_key": dm,
                    "train_data_sample_keys": samples,
                    "in_models_ids": ["root"],
                },
            ],
            "testtuples": [{"objective_key": objective, "traintuple_id": "leaf"}],
        }
    )
    plan_id = plan["computePlanID"]
    root = _tuple_key("traintuple", CREATOR, algo, dm, plan_id, *samples)
    leaf = _tuple_key("traintuple", CREATOR, algo, dm, plan_id, *samples, root)
    assert plan["IDToKey"] == {"root": root, "leaf": leaf}
    assert plan["testtupleKeys"] == [
        _tuple_key("testtuple", CREATOR, objective, dm, plan_id, *world.test_keys, leaf)
    ]


def test_every_get_and_list_of_algo_and_tuple_kinds(client: Client, world: World):
    aggregate = world.algo(client, "aggregate_algo")
    composite = world.algo(client, "composite_algo")
    assert client.get_aggregate_algo(aggregate["key"]) == aggregate
    assert client.get_composite_algo(composite["key"]) == composite
    assert client.list_aggregate_algo() == [aggregate]
    assert client.list_composite_algo() == [composite]
    assert aggregate["content"]["storageAddress"] == f"/aggregate_algo/{aggregate['key']}/file/"
    assert composite["description"]["storageAddress"] == (
        f"/composite_algo/{composite['key']}/description/"
    )
    comp = client.add_composite_traintuple(
        {
            "algo_key": composite["key"],
            "data_manager_key": world.dataset["key"],
            "train_data_sample_keys": world.train_keys,
            "out_trunk_model_permissions": {"authorized_ids": [CREATOR]},
        }
    )
    agg = client.add_aggregatetuple(
        {"algo_key": aggregate["key"], "in_models_keys": [comp["key"]], "worker": CREATOR}
    )
    assert agg["inModels"][0]["hash"] == comp["outTrunkModel"]["outModel"]["hash"]
    assert comp["outHeadModel"]["outModel"]["hash"] != comp["outTrunkModel"]["outModel"]["hash"]
    assert client.list_composite_traintuple() == [comp]
    assert client.list_aggregatetuple() == [agg]
    assert client.list_aggregatetuple(["aggregatetuple:worker:MyOrg1MSP"]) == [agg]
    assert client.get_aggregatetuple(agg["key"]) == agg
    assert client.get_composite_traintuple(comp["key"]) == comp
    with pytest.raises(exceptions.NotFound):
        client.get_traintuple(agg["key"])  # an aggregatetuple is not a traintuple
