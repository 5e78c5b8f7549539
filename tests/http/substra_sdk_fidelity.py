"""The whole workflow of the real substra==0.7.0a1 SDK against a `substra-worker node` process.

Not collected by pytest: the real SDK is not a dependency of this project. Run it
from a separate environment (the SDK imports ``docker`` and wants ``pydantic<2``;
its local backend calls ``docker.from_env()`` at import time, so a stub module
stands in for Docker)::

    python3 -m venv /tmp/substra-sdk && /tmp/substra-sdk/bin/pip install \\
        "substra==0.7.0a1" "pydantic<2"
    /tmp/substra-sdk/bin/python tests/http/substra_sdk_fidelity.py

The node runs under this project's interpreter (``--node-python``, default
``.venv/bin/python``). Prints one line per check and a JSON summary; exits 1 if
any check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# a stand-in for the Docker SDK, which the real client's local backend uses at import
_docker = types.ModuleType("docker")
_docker.from_env = lambda: None  # type: ignore[attr-defined]
_docker.errors = types.SimpleNamespace(ContainerError=Exception, DockerException=Exception)  # type: ignore[attr-defined]
sys.modules.setdefault("docker", _docker)

import substra  # noqa: E402
from substra.sdk import exceptions  # noqa: E402

from tests import assets  # noqa: E402
from tests.support.node_process import start_node  # noqa: E402

PERMISSIONS = {"public": True, "authorized_ids": []}
TRUNK_PERMISSIONS = {"authorized_ids": []}
PLAN_TRUNK_PERMISSIONS = {"public": False, "authorized_ids": []}  # that SDK's plan schema wants it
NODE_ID = "MyOrg1MSP"
results: list[tuple[str, bool]] = []


def check(name: str, ok: object, detail: object = "") -> None:
    results.append((name, bool(ok)))
    print("OK  " if ok else "FAIL", name, "" if ok else detail, flush=True)


def raises(name: str, error: type[Exception], call) -> None:
    try:
        call()
    except error:
        check(name, True)
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        check(name, False, repr(e))
    else:
        check(name, False, "no exception")


def wait(get, key: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        asset = get(key)
        if asset["status"] in ("done", "failed", "canceled") or time.monotonic() > deadline:
            return asset
        time.sleep(0.3)


def workflow(url: str, data_root: Path, work: Path) -> None:
    client = substra.Client(url=url)
    check("login", client.login("admin", "admin"))
    raises(
        "bad login",
        exceptions.BadLoginException,
        lambda: substra.Client(url=url).login("admin", "x"),
    )
    raises(
        "401",
        exceptions.AuthenticationError,
        lambda: substra.Client(url=url, token="x").list_algo(),
    )
    check("list_node", client.list_node() == [{"id": NODE_ID, "isCurrent": True}])

    dataset_data = {
        "name": "fidelity",
        "type": "csv",
        "data_opener": str(assets.opener_path(work, variant=1)),
        "description": str(assets.description_path("# fidelity ü\n", work)),
        "permissions": PERMISSIONS,
    }
    dataset = client.add_dataset(dataset_data)["key"]
    raises("409 dataset", exceptions.AlreadyExists, lambda: client.add_dataset(dataset_data))
    check("exist_ok dataset", client.add_dataset(dataset_data, exist_ok=True)["key"] == dataset)
    check("describe_dataset", client.describe_dataset(dataset) == "# fidelity ü\n")
    (work / "dl").mkdir()
    client.download_dataset(dataset, str(work / "dl"))
    check(
        "download_dataset",
        (work / "dl" / "opener.py").read_bytes()
        == assets.opener_path(work, variant=1).read_bytes(),
    )

    train_folders = assets.make_sample_folders(work / "train", 4, seed=11)
    test_folders = assets.make_sample_folders(work / "test", 2, test=True, seed=11)
    sample = {"data_manager_keys": [dataset], "test_only": False}
    first = client.add_data_sample({**sample, "path": str(train_folders[0])})
    check("add_data_sample", first.get("pkhash"))
    again = client.add_data_sample({**sample, "path": str(train_folders[0])}, exist_ok=True)
    check("add_data_sample exist_ok", again == {"pkhash": first["pkhash"]})
    # one folder per call: with several, that client uploads every other folder only
    train = [first["pkhash"]]
    for folder in train_folders[1:]:
        train += [s["pkhash"] for s in client.add_data_samples({**sample, "paths": [str(folder)]})]
    test = []
    for folder in test_folders:
        added = client.add_data_samples({**sample, "paths": [str(folder)], "test_only": True})
        test += [s["pkhash"] for s in added]
    remote = assets.make_sample_folders(data_root / "fidelity", 2, seed=12)
    on_server = client.add_data_samples({**sample, "paths": [str(p) for p in remote]}, local=False)
    check("local=False inside the data root", len(on_server) == 2)
    raises(
        "local=False outside the data root",
        exceptions.AuthorizationError,
        lambda: client.add_data_sample({**sample, "path": str(train_folders[0])}, local=False),
    )
    check("list_data_sample", set(train + test) <= {s["key"] for s in client.list_data_sample()})

    objective = client.add_objective(
        {
            "name": "fidelity objective",
            "description": str(assets.description_path("# fidelity objective\n", work)),
            "metrics_name": assets.METRICS_NAME,
            "metrics": str(assets.metrics_archive(work, variant=1)),
            "test_data_manager_key": dataset,
            "test_data_sample_keys": test,
            "permissions": PERMISSIONS,
        }
    )["key"]
    check("describe_objective", client.describe_objective(objective) == "# fidelity objective\n")
    (work / "dl-objective").mkdir()
    client.download_objective(objective, str(work / "dl-objective"))
    check("download_objective", any((work / "dl-objective").iterdir()))
    other = client.add_dataset(
        {**dataset_data, "name": "other", "data_opener": str(assets.opener_path(work, variant=2))}
    )["key"]
    client.link_dataset_with_objective(other, objective)
    check("link_dataset_with_objective", client.get_dataset(other)["objectiveKey"] == objective)
    client.link_dataset_with_data_samples(other, train)
    check(
        "link_dataset_with_data_samples",
        set(client.get_dataset(other)["trainDataSampleKeys"]) == set(train),
    )

    algos = {}
    for kind in ("algo", "aggregate_algo", "composite_algo"):
        algos[kind] = getattr(client, f"add_{kind}")(
            {
                "name": f"fidelity {kind}",
                "description": str(assets.description_path(f"# fidelity {kind}\n", work)),
                "file": str(assets.make_algo_archive(kind, work, variant=1)),
                "permissions": PERMISSIONS,
            }
        )["key"]
        check(
            f"describe_{kind}",
            getattr(client, f"describe_{kind}")(algos[kind]) == f"# fidelity {kind}\n",
        )
        folder = work / f"dl-{kind}"
        folder.mkdir()
        getattr(client, f"download_{kind}")(algos[kind], str(folder))
        check(f"download_{kind}", any(folder.iterdir()))
        listed = getattr(client, f"list_{kind}")([f"{kind}:name:fidelity {kind}"])
        check(f"list_{kind} filtered", [a["key"] for a in listed] == [algos[kind]])

    train_data = {"data_manager_key": dataset, "train_data_sample_keys": train}
    traintuple = client.add_traintuple({"algo_key": algos["algo"], **train_data, "tag": "fidelity"})
    traintuple = wait(client.get_traintuple, traintuple["key"])
    check("traintuple done", traintuple["status"] == "done", traintuple.get("log"))
    composite = client.add_composite_traintuple(
        {
            "algo_key": algos["composite_algo"],
            **train_data,
            "out_trunk_model_permissions": TRUNK_PERMISSIONS,
        }
    )
    composite = wait(client.get_composite_traintuple, composite["key"])
    check("composite traintuple done", composite["status"] == "done", composite.get("log"))
    aggregate = client.add_aggregatetuple(
        {
            "algo_key": algos["aggregate_algo"],
            "in_models_keys": [traintuple["key"], composite["key"]],
            "worker": NODE_ID,
        }
    )
    check(
        "aggregatetuple done", wait(client.get_aggregatetuple, aggregate["key"])["status"] == "done"
    )
    testtuple = client.add_testtuple(
        {"objective_key": objective, "traintuple_key": traintuple["key"]}
    )
    testtuple = wait(client.get_testtuple, testtuple["key"])
    check("testtuple done and certified", testtuple["status"] == "done" and testtuple["certified"])
    board = client.leaderboard(objective, sort="asc")
    check("leaderboard", [t["key"] for t in board["testtuples"]] == [testtuple["key"]], board)
    check(
        "list_traintuple filtered",
        [t["key"] for t in client.list_traintuple(["traintuple:tag:fidelity"])]
        == [traintuple["key"]],
    )

    plan = client.add_compute_plan(
        {
            "traintuples": [
                {
                    "traintuple_id": "t1",
                    "algo_key": algos["algo"],
                    "data_manager_key": dataset,
                    "train_data_sample_keys": train[:2],
                },
                {
                    "traintuple_id": "t2",
                    "algo_key": algos["algo"],
                    "data_manager_key": dataset,
                    "train_data_sample_keys": train[2:],
                    "in_models_ids": ["t1"],
                },
            ],
            "composite_traintuples": [
                {
                    "composite_traintuple_id": "c1",
                    "algo_key": algos["composite_algo"],
                    **train_data,
                    "out_trunk_model_permissions": PLAN_TRUNK_PERMISSIONS,
                }
            ],
            "aggregatetuples": [
                {
                    "aggregatetuple_id": "a1",
                    "algo_key": algos["aggregate_algo"],
                    "worker": NODE_ID,
                    "in_models_ids": ["t2", "c1"],
                }
            ],
            "testtuples": [
                {
                    "objective_key": objective,
                    "data_manager_key": dataset,
                    "test_data_sample_keys": test,
                    "traintuple_id": "t2",
                }
            ],
            "tag": "fidelity",
            "metadata": {"run": "1"},
        }
    )
    plan_id = plan["computePlanID"]
    done = wait(client.get_compute_plan, plan_id)
    check("compute plan done", done["status"] == "done", done)
    updated = client.update_compute_plan(
        plan_id,
        {
            "traintuples": [
                {
                    "traintuple_id": "t3",
                    "algo_key": algos["algo"],
                    **train_data,
                    "in_models_ids": ["t2"],
                }
            ]
        },
    )
    check("update_compute_plan", updated["tupleCount"] == done["tupleCount"] + 1)
    check("updated plan done", wait(client.get_compute_plan, plan_id)["status"] == "done")
    check("list_compute_plan", plan_id in [p["computePlanID"] for p in client.list_compute_plan()])

    sleeper = client.add_algo(
        {
            "name": "sleeper",
            "description": str(assets.description_path("# sleeper\n", work)),
            "file": str(assets.make_algo_archive("sleeping_algo", work, variant=1, sleep=30)),
            "permissions": PERMISSIONS,
        }
    )["key"]
    sleeping = client.add_compute_plan(
        {"traintuples": [{"traintuple_id": "s", "algo_key": sleeper, **train_data}]}
    )
    time.sleep(1)
    check(
        "cancel_compute_plan",
        client.cancel_compute_plan(sleeping["computePlanID"])["status"] == "canceled",
    )
    raises("bad key is InvalidRequest", exceptions.InvalidRequest, lambda: client.get_algo("zz"))
    raises("unknown key is NotFound", exceptions.NotFound, lambda: client.get_algo("ab" * 32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-python", default=str(ROOT / ".venv" / "bin" / "python"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="substra-sdk-fidelity-"))
    data_root = work / "data-root"
    data_root.mkdir()
    node = start_node(work / "state", data_roots=[data_root], python=args.node_python)
    try:
        workflow(node.url, data_root, work)
    finally:
        node.stop()
    failed = [name for name, ok in results if not ok]
    print(json.dumps({"substra": substra.__version__, "checks": len(results), "failed": failed}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
