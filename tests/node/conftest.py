"""Fixtures of the embedded node tests: a debug Client on a fresh state folder, and assets.

``Client(debug=True)`` reads ``get_settings()``; the ``debug_env`` fixture points
``SUBSTRA_WORKER_STATE_DIR`` at the test's tmp_path and clears the settings cache, so
every Client made in a test (and ``DebugBackend(settings)``) uses that folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from substra_worker import Client
from substra_worker.node.node import Node
from substra_worker.settings import Settings, get_settings
from tests import assets

PUBLIC = {"public": True, "authorized_ids": []}


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def debug_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings of a debug Client whose state is under tmp_path/state."""
    monkeypatch.setenv("SUBSTRA_WORKER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("SUBSTRA_WORKER_DATA_ROOTS", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def client(debug_env: Settings) -> Iterator[Client]:
    c = Client(debug=True)
    yield c
    c.close()


def node_of(client: Client) -> Node:
    return client.backend.node


@dataclass
class World:
    """Registered assets shared by the compute tests."""

    tmp: Path
    dataset: dict
    train_keys: list[str]
    test_keys: list[str]
    objective: dict
    algos: dict[str, dict] = field(default_factory=dict)

    def algo(self, client: Client, kind: str, **kwargs) -> dict:
        """Register (once) the test algo ``kind`` of tests/assets."""
        name = kind + "".join(f"-{k}{v}" for k, v in sorted(kwargs.items()))
        if name not in self.algos:
            archive = assets.make_algo_archive(kind, self.tmp / "archives", **kwargs)
            add = {
                "algo": client.add_algo,
                "aggregate_algo": client.add_aggregate_algo,
                "composite_algo": client.add_composite_algo,
            }[assets.ASSET_KIND[kind]]
            self.algos[name] = add(
                {
                    "name": name,
                    "file": str(archive),
                    "description": str(assets.description_path(f"algo {name}", self.tmp)),
                    "permissions": PUBLIC,
                }
            )
        return self.algos[name]


def make_world(client: Client, tmp: Path, *, n_train: int = 3, n_test: int = 2) -> World:
    dataset = client.add_dataset(
        {
            "name": "linear",
            "type": "csv",
            "data_opener": str(assets.opener_path()),
            "description": str(assets.description_path("the linear dataset", tmp)),
            "permissions": PUBLIC,
            "metadata": {"origin": "tests"},
        }
    )
    train = assets.make_sample_folders(tmp / "train", n_train, seed=1)
    test = assets.make_sample_folders(tmp / "test", n_test, test=True, seed=1)
    train_keys = [
        s["pkhash"]
        for s in client.add_data_samples(
            {"paths": [str(p) for p in train], "data_manager_keys": [dataset["key"]]}
        )
    ]
    test_keys = [
        s["pkhash"]
        for s in client.add_data_samples(
            {
                "paths": [str(p) for p in test],
                "data_manager_keys": [dataset["key"]],
                "test_only": True,
            }
        )
    ]
    objective = client.add_objective(
        {
            "name": "fit a line",
            "metrics_name": assets.METRICS_NAME,
            "metrics": str(assets.metrics_archive(tmp / "archives")),
            "description": str(assets.description_path("the objective", tmp)),
            "test_data_manager_key": dataset["key"],
            "test_data_sample_keys": test_keys,
            "permissions": PUBLIC,
        }
    )
    return World(tmp, client.get_dataset(dataset["key"]), train_keys, test_keys, objective)


@pytest.fixture
def world(client: Client, tmp_path: Path) -> World:
    return make_world(client, tmp_path)


@pytest.fixture
def traintuple_input(world: World, client: Client) -> Callable[..., dict]:
    def make(kind: str = "algo", **extra) -> dict:
        return {
            "algo_key": world.algo(client, kind)["key"],
            "data_manager_key": world.dataset["key"],
            "train_data_sample_keys": world.train_keys,
            **extra,
        }

    return make
