"""Valid call payloads of every write operation, as the reference document describes them.

Each case is a job payload (``{argument name: value}``, what ``validate_call``
takes), its minimal form (required fields only) and the dotted paths of its
required fields. Tests mutate them; nothing here is checked against the schemas.
"""

from __future__ import annotations

import copy
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALGO = "a1" * 32
DATASET = "d4" * 32
OBJECTIVE = "0b" * 32
SAMPLE_1 = "5a" * 32
SAMPLE_2 = "5B" * 32  # keys may be upper-case hex
TUPLE_1 = "7c" * 32
TUPLE_2 = "7D" * 32
PLAN = "c9" * 32
NODE = "MyOrg1MSP"

OPERATIONS = (
    "add_data_sample",
    "add_data_samples",
    "add_dataset",
    "add_objective",
    "add_algo",
    "add_aggregate_algo",
    "add_composite_algo",
    "add_traintuple",
    "add_aggregatetuple",
    "add_composite_traintuple",
    "add_testtuple",
    "add_compute_plan",
    "update_compute_plan",
    "cancel_compute_plan",
    "link_dataset_with_objective",
    "link_dataset_with_data_samples",
    "download_dataset",
    "download_algo",
    "download_aggregate_algo",
    "download_composite_algo",
    "download_objective",
)
"""The write operations of the queue (issue D), named after the Client methods."""

DATA_OPERATIONS = OPERATIONS[:13]
"""The operations that take a ``data`` dict."""

PERMISSIONS_AT = {
    "add_dataset": ("data", "permissions"),
    "add_objective": ("data", "permissions"),
    "add_algo": ("data", "permissions"),
    "add_aggregate_algo": ("data", "permissions"),
    "add_composite_algo": ("data", "permissions"),
    "add_composite_traintuple": ("data", "out_trunk_model_permissions"),
    "add_compute_plan": ("data", "composite_traintuples", 0, "out_trunk_model_permissions"),
    "update_compute_plan": ("data", "composite_traintuples", 0, "out_trunk_model_permissions"),
}
"""Where each operation's example holds a permissions dict."""


class Files:
    """Real files and folders under ``root`` for the path fields."""

    def __init__(self, root: Path):
        self.root = root
        self.opener = root / "opener.py"
        self.description = root / "description.md"
        self.metrics = root / "metrics.zip"
        self.algo = root / "algo.tar.gz"
        self.samples = [root / "samples" / f"sample{i}" for i in range(3)]
        self.folder = root / "not-a-file"
        self.missing = root / "missing"

    def create(self) -> None:
        self.opener.write_text("import substratools as tools\n")
        self.description.write_text("# description\n")
        with zipfile.ZipFile(self.metrics, "w") as archive:
            archive.writestr("metrics.py", "print('metrics')\n")
            archive.writestr("Dockerfile", 'ENTRYPOINT ["python3", "metrics.py"]\n')
        script = self.root / "algo.py"
        script.write_text("print('algo')\n")
        with tarfile.open(self.algo, "w:gz") as archive:
            archive.add(script, arcname="algo.py")
        for i, sample in enumerate(self.samples):
            sample.mkdir(parents=True)
            (sample / "data.csv").write_text(f"{i}\n")
        self.folder.mkdir()


@dataclass
class Case:
    payload: dict[str, Any]  # every field, optional ones included
    minimal: dict[str, Any]  # required fields only
    required: tuple[str, ...]  # dotted paths of the required fields in ``payload``
    local: bool = True

    def fresh(self) -> dict[str, Any]:
        return copy.deepcopy(self.payload)


def _permissions(public: bool = False) -> dict[str, Any]:
    return {"public": public, "authorized_ids": [NODE]}


def _data(*names: str) -> tuple[str, ...]:
    return ("data",) + tuple(f"data.{name}" for name in names)


def build_cases(files: Files) -> dict[str, Case]:
    """One valid example per operation, with paths into ``files``."""
    opener, description = str(files.opener), str(files.description)
    samples = [str(s) for s in files.samples]
    cases: dict[str, Case] = {}

    cases["add_data_sample"] = Case(
        {"data": {"path": samples[0], "data_manager_keys": [DATASET], "test_only": False}},
        {"data": {"path": samples[0], "data_manager_keys": [DATASET]}},
        _data("path", "data_manager_keys"),
    )
    cases["add_data_samples"] = Case(
        {"data": {"paths": samples, "data_manager_keys": [DATASET], "test_only": True}},
        {"data": {"paths": samples[:1], "data_manager_keys": [DATASET]}},
        _data("paths", "data_manager_keys"),
    )
    cases["add_dataset"] = Case(
        {
            "data": {
                "name": "Titanic",
                "description": description,
                "type": "csv",
                "data_opener": opener,
                "objective_key": OBJECTIVE,
                "permissions": _permissions(True),
                "metadata": {"source": "kaggle"},
            }
        },
        {
            "data": {
                "name": "Titanic",
                "description": description,
                "type": "csv",
                "data_opener": opener,
                "permissions": _permissions(),
            }
        },
        _data(
            "name",
            "description",
            "type",
            "data_opener",
            "permissions",
            "permissions.public",
            "permissions.authorized_ids",
        ),
    )
    cases["add_objective"] = Case(
        {
            "data": {
                "name": "accuracy",
                "description": description,
                "metrics_name": "accuracy",
                "metrics": str(files.metrics),
                "test_data_manager_key": DATASET,
                "test_data_sample_keys": [SAMPLE_1, SAMPLE_2],
                "permissions": _permissions(),
                "metadata": {},
            }
        },
        {
            "data": {
                "name": "accuracy",
                "description": description,
                "metrics_name": "accuracy",
                "metrics": str(files.metrics),
                "permissions": _permissions(),
            }
        },
        _data(
            "name",
            "description",
            "metrics_name",
            "metrics",
            "permissions",
            "permissions.public",
            "permissions.authorized_ids",
        ),
    )
    for operation in ("add_algo", "add_aggregate_algo", "add_composite_algo"):
        minimal = {
            "name": operation,
            "description": description,
            "file": str(files.algo),
            "permissions": _permissions(),
        }
        cases[operation] = Case(
            {"data": {**minimal, "metadata": {"version": "1"}}},
            {"data": minimal},
            _data(
                "name",
                "description",
                "file",
                "permissions",
                "permissions.public",
                "permissions.authorized_ids",
            ),
        )
    cases["add_traintuple"] = Case(
        {
            "data": {
                "algo_key": ALGO,
                "data_manager_key": DATASET,
                "train_data_sample_keys": [SAMPLE_1, SAMPLE_2],
                "in_models_keys": [TUPLE_1],
                "tag": "",
                "metadata": {"round": "1"},
                "rank": 0,
                "compute_plan_id": PLAN,
            }
        },
        {
            "data": {
                "algo_key": ALGO,
                "data_manager_key": DATASET,
                "train_data_sample_keys": [SAMPLE_1],
            }
        },
        _data("algo_key", "data_manager_key", "train_data_sample_keys"),
    )
    cases["add_aggregatetuple"] = Case(
        {
            "data": {
                "algo_key": ALGO,
                "in_models_keys": [TUPLE_1, TUPLE_2],
                "tag": "aggregate",
                "metadata": {"round": "2"},
                "compute_plan_id": PLAN,
                "rank": 3,
                "worker": NODE,
            }
        },
        {"data": {"algo_key": ALGO, "in_models_keys": [TUPLE_1], "worker": NODE}},
        _data("algo_key", "in_models_keys", "worker"),
    )
    cases["add_composite_traintuple"] = Case(
        {
            "data": {
                "algo_key": ALGO,
                "data_manager_key": DATASET,
                "train_data_sample_keys": [SAMPLE_1],
                "in_head_model_key": TUPLE_1,
                "in_trunk_model_key": TUPLE_2,
                "out_trunk_model_permissions": {"authorized_ids": [NODE]},
                "tag": "composite",
                "metadata": {"round": "1"},
                "rank": 1,
                "compute_plan_id": PLAN,
            }
        },
        {
            "data": {
                "algo_key": ALGO,
                "data_manager_key": DATASET,
                "train_data_sample_keys": [SAMPLE_1],
                "out_trunk_model_permissions": {"authorized_ids": []},
            }
        },
        _data(
            "algo_key",
            "data_manager_key",
            "train_data_sample_keys",
            "out_trunk_model_permissions",
            "out_trunk_model_permissions.authorized_ids",
        ),
    )
    cases["add_testtuple"] = Case(
        {
            "data": {
                "objective_key": OBJECTIVE,
                "data_manager_key": DATASET,
                "traintuple_key": TUPLE_1,
                "test_data_sample_keys": [SAMPLE_2],
                "tag": "test",
                "metadata": {"k": "v"},
            }
        },
        {"data": {"objective_key": OBJECTIVE, "traintuple_key": TUPLE_1}},
        _data("objective_key", "traintuple_key"),
    )

    tuples = _plan_tuples()
    item_required = (
        "traintuples.0.traintuple_id",
        "traintuples.0.algo_key",
        "traintuples.0.data_manager_key",
        "traintuples.0.train_data_sample_keys",
        "composite_traintuples.0.composite_traintuple_id",
        "composite_traintuples.0.algo_key",
        "composite_traintuples.0.data_manager_key",
        "composite_traintuples.0.train_data_sample_keys",
        "composite_traintuples.0.out_trunk_model_permissions",
        "composite_traintuples.0.out_trunk_model_permissions.authorized_ids",
        "aggregatetuples.0.aggregatetuple_id",
        "aggregatetuples.0.algo_key",
        "aggregatetuples.0.worker",
        "aggregatetuples.0.in_models_ids",
        "testtuples.0.objective_key",
        "testtuples.0.traintuple_id",
    )
    cases["add_compute_plan"] = Case(
        {"data": {**tuples, "clean_models": True, "tag": "plan", "metadata": {"job": "j1"}}},
        {"data": {}},
        _data(*item_required),
    )
    # an update may name tuples already in the plan ("earlier")
    update = _plan_tuples()
    update["traintuples"][0]["in_models_ids"] = ["earlier"]
    cases["update_compute_plan"] = Case(
        {"compute_plan_id": PLAN, "data": update},
        {"compute_plan_id": PLAN, "data": {}},
        ("compute_plan_id",) + _data(*item_required),
    )
    cases["cancel_compute_plan"] = Case(
        {"compute_plan_id": PLAN}, {"compute_plan_id": PLAN}, ("compute_plan_id",)
    )
    cases["link_dataset_with_objective"] = Case(
        {"dataset_key": DATASET, "objective_key": OBJECTIVE},
        {"dataset_key": DATASET, "objective_key": OBJECTIVE},
        ("dataset_key", "objective_key"),
    )
    cases["link_dataset_with_data_samples"] = Case(
        {"dataset_key": DATASET, "data_sample_keys": [SAMPLE_1, SAMPLE_2]},
        {"dataset_key": DATASET, "data_sample_keys": [SAMPLE_1]},
        ("dataset_key", "data_sample_keys"),
    )
    for operation, key in (
        ("download_dataset", DATASET),
        ("download_algo", ALGO),
        ("download_aggregate_algo", ALGO),
        ("download_composite_algo", ALGO),
        ("download_objective", OBJECTIVE),
    ):
        payload = {"key": key, "destination_folder": str(files.root / "downloads")}
        cases[operation] = Case(payload, copy.deepcopy(payload), ("key", "destination_folder"))
    return cases


def _plan_tuples() -> dict[str, Any]:
    """A small DAG: t1 -> t2, c1 -> c2 <- a1 <- (t2, c1); tests on t2 and c2."""

    def train() -> dict[str, Any]:  # a new list per tuple: tests mutate one tuple at a time
        return {"algo_key": ALGO, "data_manager_key": DATASET, "train_data_sample_keys": [SAMPLE_1]}

    return {
        "traintuples": [
            {"traintuple_id": "t1", **train(), "tag": "", "metadata": {"r": "0"}},
            {"traintuple_id": "t2", **train(), "in_models_ids": ["t1"]},
        ],
        "composite_traintuples": [
            {
                "composite_traintuple_id": "c1",
                **train(),
                "out_trunk_model_permissions": {"authorized_ids": [NODE]},
                "tag": "head",
                "metadata": {},
            },
            {
                "composite_traintuple_id": "c2",
                **train(),
                "in_head_model_id": "c1",
                "in_trunk_model_id": "a1",
                "out_trunk_model_permissions": {"authorized_ids": []},
            },
        ],
        "aggregatetuples": [
            {
                "aggregatetuple_id": "a1",
                "algo_key": ALGO,
                "worker": NODE,
                "in_models_ids": ["t2", "c1"],
                "tag": "agg",
                "metadata": {"k": "v"},
            }
        ],
        "testtuples": [
            {
                "objective_key": OBJECTIVE,
                "traintuple_id": "t2",
                "data_manager_key": DATASET,
                "test_data_sample_keys": [SAMPLE_2],
                "tag": "",
                "metadata": {},
            },
            {"objective_key": OBJECTIVE, "traintuple_id": "c2"},
        ],
    }


def get_at(payload: Any, path: str | tuple) -> Any:
    """The value at a dotted path (list indexes as numbers)."""
    parts = path.split(".") if isinstance(path, str) else path
    node = payload
    for part in parts:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def parent_at(payload: Any, path: str) -> tuple[Any, Any]:
    """(container, key) of a dotted path, so a test can drop or replace the value."""
    *head, last = path.split(".")
    container = get_at(payload, head) if head else payload
    return container, int(last) if isinstance(container, list) else last


def json_type(value: Any) -> str:
    """The JSON type name of ``value``: property tests replace a value by one of another type."""
    for name, kinds in (
        ("bool", bool),
        ("int", int),
        ("float", float),
        ("str", str),
        ("null", type(None)),
        ("list", (list, tuple)),
        ("dict", dict),
    ):
        if isinstance(value, kinds):
            return name
    raise AssertionError(value)
