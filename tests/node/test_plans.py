"""Compute plans in debug mode: a large mixed DAG, updates, DAG checks, clean_models,
failures and their propagation, cancel of a running plan, step time limit."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from substra_worker import Client
from substra_worker.node.errors import BadRequest, NotFound
from substra_worker.sdk import exceptions
from substra_worker.settings import get_settings
from tests import assets
from tests.node.conftest import World, node_of

KEY_FIELDS = ("traintupleKeys", "aggregatetupleKeys", "compositeTraintupleKeys", "testtupleKeys")


def _train(world: World, algo: dict, ident: str, parents=(), **extra) -> dict:
    return {
        "traintuple_id": ident,
        "algo_key": algo["key"],
        "data_manager_key": world.dataset["key"],
        "train_data_sample_keys": world.train_keys,
        "in_models_ids": list(parents),
        **extra,
    }


def _composite(world: World, algo: dict, ident: str, head=None, trunk=None, samples=None) -> dict:
    item = {
        "composite_traintuple_id": ident,
        "algo_key": algo["key"],
        "data_manager_key": world.dataset["key"],
        "train_data_sample_keys": samples or world.train_keys,
        "out_trunk_model_permissions": {"authorized_ids": ["MyOrg1MSP"]},
    }
    if head:
        item.update(in_head_model_id=head, in_trunk_model_id=trunk)
    return item


def _aggregate(algo: dict, ident: str, parents) -> dict:
    return {
        "aggregatetuple_id": ident,
        "algo_key": algo["key"],
        "worker": "MyOrg1MSP",
        "in_models_ids": list(parents),
    }


def _test(world: World, ident: str) -> dict:
    return {"objective_key": world.objective["key"], "traintuple_id": ident, "tag": f"test {ident}"}


def test_large_mixed_plan_then_update(client: Client, world: World):
    algo = world.algo(client, "algo")
    agg = world.algo(client, "aggregate_algo")
    comp = world.algo(client, "composite_algo")
    # Given 22 tuples over 4 ranks mixing every kind (same inputs would be the same tuple:
    # the rank-0 ones train on different samples)
    subsets = [[k] for k in world.train_keys] + [world.train_keys[:2]]
    data = {
        "traintuples": [
            *(
                _train(world, algo, f"t{i}", tag=f"t{i}", train_data_sample_keys=subsets[i])
                for i in range(4)
            ),
            _train(world, algo, "t4", ["t0"]),
            _train(world, algo, "t5", ["t1"]),
            _train(world, algo, "t6", ["a1"]),
            _train(world, algo, "t7", ["a2"]),
        ],
        "composite_traintuples": [
            _composite(world, comp, "c0", samples=subsets[0]),
            _composite(world, comp, "c1", samples=subsets[1]),
            _composite(world, comp, "c2", head="c0", trunk="a1"),
            _composite(world, comp, "c3", head="c1", trunk="a1"),
        ],
        "aggregatetuples": [
            _aggregate(agg, "a1", ["t0", "t1", "t2", "t3", "c0", "c1"]),
            _aggregate(agg, "a2", ["t4", "t5"]),
            _aggregate(agg, "a3", ["c2", "c3", "t6"]),
        ],
        "testtuples": [_test(world, i) for i in ("t0", "t3", "c0", "c2", "c3", "t6", "t7")],
        "tag": "big",
        "metadata": {"job": "j1"},
        "clean_models": False,
    }
    expected_ranks = {
        **dict.fromkeys(["t0", "t1", "t2", "t3", "c0", "c1"], 0),
        **dict.fromkeys(["a1", "t4", "t5"], 1),
        **dict.fromkeys(["c2", "c3", "t6", "a2"], 2),
        **dict.fromkeys(["a3", "t7"], 3),
    }

    # When the plan is added (debug mode runs it before returning)
    plan = client.add_compute_plan(data)

    # Then every tuple is done, with the ranks and keys of the DAG
    assert plan["status"] == "done"
    assert plan["tupleCount"] == 22 and plan["doneCount"] == 22
    assert [len(plan[f]) for f in KEY_FIELDS] == [8, 3, 4, 7]
    assert set(plan["IDToKey"]) == set(expected_ranks)
    assert plan["tag"] == "big" and plan["metadata"] == {"job": "j1"}
    assert plan["cleanModels"] is False
    id_to_key = plan["IDToKey"]
    getters = {"t": client.get_traintuple, "a": client.get_aggregatetuple}
    getters["c"] = client.get_composite_traintuple
    shapes = {ident: getters[ident[0]](key) for ident, key in id_to_key.items()}
    for ident, shape in shapes.items():
        assert shape["rank"] == expected_ranks[ident], ident
        assert shape["status"] == "done"
        assert shape["computePlanID"] == plan["computePlanID"]
    assert shapes["t0"]["tag"] == "t0"
    # composite inputs are the parents' outputs: head of a composite, trunk of an aggregate
    c2 = shapes["c2"]
    assert c2["inHeadModel"]["traintupleKey"] == id_to_key["c0"]
    assert c2["inHeadModel"]["hash"] == shapes["c0"]["outHeadModel"]["outModel"]["hash"]
    assert c2["inTrunkModel"]["hash"] == shapes["a1"]["outModel"]["hash"]
    assert c2["outTrunkModel"]["permissions"]["process"] == {
        "public": False,
        "authorizedIDs": ["MyOrg1MSP"],
    }
    a1_inputs = {m["traintupleKey"]: m["hash"] for m in shapes["a1"]["inModels"]}
    assert a1_inputs[id_to_key["c0"]] == shapes["c0"]["outTrunkModel"]["outModel"]["hash"]
    assert a1_inputs[id_to_key["t2"]] == shapes["t2"]["outModel"]["hash"]
    assert shapes["a1"]["worker"] == "MyOrg1MSP"
    testtuples = [client.get_testtuple(k) for k in plan["testtupleKeys"]]
    assert all(t["status"] == "done" and t["certified"] for t in testtuples)
    by_tested = {t["traintupleKey"]: t for t in testtuples}
    assert by_tested[id_to_key["c2"]]["traintupleType"] == "compositeTraintuple"
    assert by_tested[id_to_key["c2"]]["rank"] == 2  # the rank of the tested tuple
    assert by_tested[id_to_key["c2"]]["algo"]["hash"] == comp["key"]
    assert len(client.leaderboard(world.objective["key"])["testtuples"]) == 7
    assert client.get_compute_plan(plan["computePlanID"]) == plan
    # tuples of the plan are found by plan id and plan tag
    assert len(client.list_testtuple(["compute_plan:tag:big"])) == 7

    # When the plan is updated with tuples depending on existing ids
    updated = client.update_compute_plan(
        plan["computePlanID"],
        {
            "traintuples": [_train(world, algo, "t8", ["t7", "a3"])],
            "testtuples": [_test(world, "t8")],
        },
    )

    # Then they ran too, and the plan counts them
    assert updated["status"] == "done"
    assert updated["tupleCount"] == 24 and updated["doneCount"] == 24
    assert updated["IDToKey"] == {**id_to_key, "t8": updated["IDToKey"]["t8"]}
    t8 = client.get_traintuple(updated["IDToKey"]["t8"])
    assert t8["rank"] == 4 and t8["status"] == "done"
    with pytest.raises(exceptions.InvalidRequest, match="twice"):
        client.update_compute_plan(
            plan["computePlanID"], {"traintuples": [_train(world, algo, "t8")]}
        )
    with pytest.raises(exceptions.NotFound):
        client.update_compute_plan("0" * 64, {"traintuples": [_train(world, algo, "x")]})


def test_plan_dag_checks(client: Client, world: World):
    algo = world.algo(client, "algo")
    comp = world.algo(client, "composite_algo")
    bad_plans = {
        "unknown id": {"traintuples": [_train(world, algo, "a", ["nope"])]},
        "cycle": {
            "traintuples": [
                _train(world, algo, "root"),
                _train(world, algo, "a", ["root", "b"]),
                _train(world, algo, "b", ["a"]),
            ]
        },
        "twice": {"traintuples": [_train(world, algo, "a"), _train(world, algo, "a")]},
        "not a composite": {
            "traintuples": [_train(world, algo, "t")],
            "composite_traintuples": [_composite(world, comp, "c", head="t", trunk="t")],
        },
        "unknown id 'missing'": {"testtuples": [_test(world, "missing")]},
    }
    node = node_of(client)
    for reason, data in bad_plans.items():
        # the node checks (the client's schemas may refuse some before they are sent)
        with pytest.raises(BadRequest) as info:
            node.add_compute_plan(data)
        if reason != "not a composite":
            assert reason.split(" '")[0] in str(info.value), reason
        with pytest.raises(exceptions.SDKException):
            client.add_compute_plan(data)
    # nothing was created by the refused plans
    assert client.list_compute_plan() == []
    assert client.list_traintuple() == []
    # an empty plan is done at once
    empty = client.add_compute_plan({"tag": "empty"})
    assert empty["status"] == "done" and empty["tupleCount"] == 0
    assert len(empty["computePlanID"]) == 64


def test_clean_models(client: Client, world: World):
    algo = world.algo(client, "algo")
    node = node_of(client)

    def samples(i: int) -> dict:
        return {"train_data_sample_keys": [world.train_keys[i]]}

    def chain(clean: bool) -> dict:
        return client.add_compute_plan(
            {
                "traintuples": [
                    # different samples per step: different models (files are shared by hash)
                    _train(world, algo, f"t{i}", [f"t{i - 1}"] if i else [], **samples(i))
                    for i in range(3)
                ],
                "testtuples": [_test(world, "t1"), _test(world, "t2")],
                "clean_models": clean,
            }
        )

    # Given a chain t0 -> t1 -> t2 (t1 and t2 tested) with clean_models
    plan = chain(True)
    assert plan["status"] == "done" and plan["cleanModels"] is True
    hashes = {i: client.get_traintuple(k)["outModel"]["hash"] for i, k in plan["IDToKey"].items()}
    assert len(set(hashes.values())) == 3

    # Then the intermediary models are gone, the final one is kept
    for ident in ("t0", "t1"):
        with pytest.raises(NotFound):
            node.file_path("model", hashes[ident], "model")
    assert node.file_path("model", hashes["t2"], "model").is_file()
    # and a new tuple that needs a deleted model is refused
    with pytest.raises(exceptions.InvalidRequest, match="deleted"):
        client.update_compute_plan(
            plan["computePlanID"], {"traintuples": [_train(world, algo, "t3", ["t1"])]}
        )

    # Without clean_models every model is kept
    kept = chain(False)
    for key in kept["IDToKey"].values():
        digest = client.get_traintuple(key)["outModel"]["hash"]
        assert node.file_path("model", digest, "model").is_file()


def test_failing_algo_fails_its_children(client: Client, world: World, traintuple_input):
    failing = world.algo(client, "failing_algo")
    algo = world.algo(client, "algo")

    # A single failing traintuple: ExecutionError with the log tail, tuple recorded failed
    with pytest.raises(exceptions.ExecutionError) as info:
        client.add_traintuple(traintuple_input("failing_algo"))
    assert assets.FAILURE_MESSAGE in info.value.log
    failed = client.get_traintuple(info.value.key)
    assert failed["status"] == "failed" and assets.FAILURE_MESSAGE in failed["log"]
    assert failed["outModel"] is None
    # its child is failed at once
    with pytest.raises(exceptions.ExecutionError):
        client.add_traintuple(traintuple_input(in_models_keys=[failed["key"]]))
    assert client.list_traintuple(["traintuple:status:doing"]) == []

    # In a plan: the failure reaches every descendant, independent branches still run
    with pytest.raises(exceptions.ExecutionError) as info:
        client.add_compute_plan(
            {
                "traintuples": [
                    _train(world, failing, "bad"),
                    _train(world, algo, "child", ["bad"]),
                    _train(world, algo, "grandchild", ["child"]),
                    _train(world, algo, "fine"),
                ],
                "testtuples": [_test(world, "child"), _test(world, "fine")],
            }
        )
    plan_id = info.value.key
    assert assets.FAILURE_MESSAGE in info.value.log
    plan = client.get_compute_plan(plan_id)
    assert plan["status"] == "failed"
    assert plan["doneCount"] == 2 and plan["tupleCount"] == 6
    statuses = {i: client.get_traintuple(k)["status"] for i, k in plan["IDToKey"].items()}
    assert statuses == {"bad": "failed", "child": "failed", "grandchild": "failed", "fine": "done"}
    tests = {
        t["traintupleKey"]: t["status"] for t in map(client.get_testtuple, plan["testtupleKeys"])
    }
    assert tests == {plan["IDToKey"]["child"]: "failed", plan["IDToKey"]["fine"]: "done"}


def test_cancel_a_running_plan(client: Client, world: World, debug_env):
    sleeping = world.algo(client, "sleeping_algo", sleep=30)
    algo = world.algo(client, "algo")
    data = {
        "traintuples": [
            _train(world, sleeping, "slow"),
            _train(world, algo, "after", ["slow"]),
            _train(world, algo, "fast"),
        ],
        "testtuples": [_test(world, "after")],
    }
    outcome: dict = {}

    def add() -> None:
        started = time.monotonic()
        try:
            outcome["plan"] = client.add_compute_plan(data)
        except Exception as e:  # noqa: BLE001 - reported by the assertions below
            outcome["error"] = e
        outcome["seconds"] = time.monotonic() - started

    # Given a plan whose first step sleeps, added (and so run) in another thread
    runner = threading.Thread(target=add)
    runner.start()
    state = Path(debug_env.node_state_dir)
    with Client(debug=True) as other:  # another client on the same state folder
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the sleeping step never started"
            plans = other.list_compute_plan()
            if plans:
                ids = plans[0]["IDToKey"]
                pids_file = state / "sandboxes" / ids["slow"] / "work" / assets.PIDS_FILE
                fast = other.get_traintuple(ids["fast"])["status"]
                if pids_file.is_file() and fast == "done":
                    break
            time.sleep(0.05)
        pids = [int(p) for p in pids_file.read_text().split()]

        # When the plan is canceled from here
        canceled = other.cancel_compute_plan(plans[0]["computePlanID"])

    # Then the blocked call returns soon, the step's processes are gone, nothing is left doing
    runner.join(15)
    assert not runner.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["seconds"] < 20
    assert canceled["status"] == "canceled"
    plan = client.get_compute_plan(canceled["computePlanID"])
    assert plan["status"] == "canceled" and plan["doneCount"] == 1 and plan["tupleCount"] == 4
    statuses = {i: client.get_traintuple(k)["status"] for i, k in plan["IDToKey"].items()}
    assert statuses == {"slow": "canceled", "after": "canceled", "fast": "done"}
    assert client.get_testtuple(plan["testtupleKeys"][0])["status"] == "canceled"
    for pid in pids:
        assert not _alive(pid), pid
    assert not (state / "sandboxes" / plan["IDToKey"]["slow"]).exists()
    with pytest.raises(exceptions.InvalidRequest, match="canceled"):
        client.update_compute_plan(
            plan["computePlanID"], {"traintuples": [_train(world, algo, "x")]}
        )


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_step_time_limit(debug_env, monkeypatch, tmp_path: Path):
    # Given a node whose steps may last 1 s
    monkeypatch.setenv("SUBSTRA_WORKER_STEP_TIMEOUT", "1")
    get_settings.cache_clear()
    from tests.node.conftest import make_world

    with Client(debug=True) as client:
        world = make_world(client, tmp_path)
        sleeping = world.algo(client, "sleeping_algo", sleep=30)
        started = time.monotonic()
        # When a step sleeps longer, Then it fails with the reason, in time
        with pytest.raises(exceptions.ExecutionError, match="timed out"):
            client.add_traintuple(
                {
                    "algo_key": sleeping["key"],
                    "data_manager_key": world.dataset["key"],
                    "train_data_sample_keys": world.train_keys,
                }
            )
        assert time.monotonic() - started < 10
        assert client.list_traintuple()[0]["status"] == "failed"


def test_single_tuples_join_a_plan(client: Client, world: World, traintuple_input):
    algo = world.algo(client, "algo")
    plan = client.add_compute_plan({"traintuples": [_train(world, algo, "root")]})
    plan_id = plan["computePlanID"]
    # a traintuple added with compute_plan_id belongs to the plan (and its key has the id)
    joined = client.add_traintuple(
        traintuple_input(compute_plan_id=plan_id, in_models_keys=[plan["IDToKey"]["root"]])
    )
    assert joined["computePlanID"] == plan_id and joined["rank"] == 1
    # a testtuple belongs to the plan of the tuple it tests
    tested = client.add_testtuple(
        {"objective_key": world.objective["key"], "traintuple_key": joined["key"]}
    )
    assert tested["computePlanID"] == plan_id
    after = client.get_compute_plan(plan_id)
    assert after["traintupleKeys"] == [plan["IDToKey"]["root"], joined["key"]]
    assert after["testtupleKeys"] == [tested["key"]]
    assert after["tupleCount"] == 3 and after["doneCount"] == 3 and after["status"] == "done"
    with pytest.raises(exceptions.InvalidRequest, match="compute_plan_id"):
        client.add_traintuple(traintuple_input(compute_plan_id="9" * 64))
