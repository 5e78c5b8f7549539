"""Tuples and compute plans over raw HTTP: creates answer at once, statuses move later."""

from __future__ import annotations

import time

import pytest

from tests.http.conftest import (
    add_algo,
    add_dataset,
    add_objective,
    add_samples,
    wait_for,
)


@pytest.fixture(scope="module")
def setup(api, files_dir, tmp_path_factory):
    """A dataset with train and test samples, an objective on the test ones, an algo."""
    root = tmp_path_factory.mktemp("compute-samples")
    dataset = add_dataset(api, files_dir)
    train = add_samples(api, root / "train", dataset, 2)
    test = add_samples(api, root / "test", dataset, 2, test=True)
    objective = add_objective(api, files_dir, dataset, test)
    algo = add_algo(api, files_dir)
    return {"dataset": dataset, "train": train, "test": test, "objective": objective, "algo": algo}


def test_traintuple_and_testtuple_run_in_the_background(api, setup):
    started = time.monotonic()
    response = api.post(
        "/traintuple/",
        json={
            "algo_key": setup["algo"],
            "data_manager_key": setup["dataset"],
            "train_data_sample_keys": setup["train"],
            "tag": "http",
        },
    )
    assert response.status_code == 201, response.text
    assert time.monotonic() - started < 5  # answered before the step ran to completion
    key = response.json()["pkhash"]
    first = api.get(f"/traintuple/{key}/").json()
    assert first["status"] in ("todo", "doing", "done")

    train = api.wait_status(f"/traintuple/{key}/")
    assert train["status"] == "done", train
    model_address = train["outModel"]["storageAddress"]
    assert model_address == f"{api.url}/model/{train['outModel']['hash']}/file/"
    model = api.get(model_address)
    assert model.status_code == 200 and model.content

    duplicate = api.post(
        "/traintuple/",
        json={
            "algo_key": setup["algo"],
            "data_manager_key": setup["dataset"],
            "train_data_sample_keys": setup["train"],
            "tag": "http",
        },
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["pkhash"] == key

    response = api.post(
        "/testtuple/", json={"objective_key": setup["objective"], "traintuple_key": key}
    )
    assert response.status_code == 201, response.text
    test_key = response.json()["pkhash"]
    test = api.wait_status(f"/testtuple/{test_key}/")
    assert test["status"] == "done", test
    assert test["certified"] is True
    assert isinstance(test["dataset"]["perf"], float)

    board = api.get(f"/objective/{setup['objective']}/leaderboard/?sort=desc").json()
    assert test_key in [t["key"] for t in board["testtuples"]]


def test_a_tuple_on_unknown_assets_is_refused(api, setup):
    response = api.post(
        "/traintuple/",
        json={
            "algo_key": "ab" * 32,
            "data_manager_key": setup["dataset"],
            "train_data_sample_keys": setup["train"],
        },
    )
    assert response.status_code in (400, 404)
    assert response.json()["message"]


def test_compute_plan_runs_to_done_and_can_be_updated(api, setup):
    body = {
        "traintuples": [
            {
                "traintuple_id": "t1",
                "algo_key": setup["algo"],
                "data_manager_key": setup["dataset"],
                "train_data_sample_keys": setup["train"][:1],
            },
            {
                "traintuple_id": "t2",
                "algo_key": setup["algo"],
                "data_manager_key": setup["dataset"],
                "train_data_sample_keys": setup["train"][1:],
                "in_models_ids": ["t1"],
            },
        ],
        "testtuples": [
            {
                "objective_key": setup["objective"],
                "data_manager_key": setup["dataset"],
                "test_data_sample_keys": setup["test"],
                "traintuple_id": "t2",
            }
        ],
        "tag": "plan",
    }
    response = api.post("/compute_plan/", json=body)
    assert response.status_code == 201, response.text
    plan = response.json()
    plan_id = plan["computePlanID"]
    assert set(plan["IDToKey"]) == {"t1", "t2"}
    assert plan["tupleCount"] == 3

    listed = api.get("/compute_plan/").json()
    assert plan_id in [p["computePlanID"] for group in listed for p in group]

    done = api.wait_status(f"/compute_plan/{plan_id}/")
    assert done["status"] == "done", done
    assert done["doneCount"] == 3

    update = {
        "traintuples": [
            {
                "traintuple_id": "t3",
                "algo_key": setup["algo"],
                "data_manager_key": setup["dataset"],
                "train_data_sample_keys": setup["train"],
                "in_models_ids": ["t2"],
            }
        ]
    }
    response = api.post(f"/compute_plan/{plan_id}/update_ledger/", json=update)
    assert response.status_code == 200, response.text
    assert response.json()["tupleCount"] == 4
    assert api.wait_status(f"/compute_plan/{plan_id}/")["status"] == "done"

    bad = api.post("/compute_plan/", json={"traintuples": [{**body["traintuples"][1]}]})
    assert bad.status_code == 400  # t2 refers to an id that is not in the plan
    assert bad.json()["message"]


def test_cancel_a_running_plan(api, files_dir, setup):
    sleeping = add_algo(api, files_dir, "sleeping_algo", sleep=30)
    body = {
        "traintuples": [
            {
                "traintuple_id": f"s{i}",
                "algo_key": sleeping,
                "data_manager_key": setup["dataset"],
                "train_data_sample_keys": [setup["train"][i]],
                "tag": f"sleep{i}",
            }
            for i in range(2)
        ]
    }
    response = api.post("/compute_plan/", json=body)
    assert response.status_code == 201, response.text
    plan = response.json()
    plan_id = plan["computePlanID"]
    first = plan["IDToKey"]["s0"]
    assert wait_for(lambda: api.get(f"/traintuple/{first}/").json()["status"] == "doing", 30)

    response = api.post(f"/compute_plan/{plan_id}/cancel/")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
    tuple_state = api.wait_status(f"/traintuple/{first}/", timeout=20)
    assert tuple_state["status"] == "canceled"


def test_model_file_of_an_unknown_hash_is_404(api):
    response = api.get(f"/model/{'cd' * 32}/file/")
    assert response.status_code == 404
    assert response.json()["message"]
