"""Fixtures of the bad-input tests: a node with a small upload limit, a Redis to scan."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from substra_worker import Client
from substra_worker.redis_server import BundledRedis
from tests.faults.results import record_bad_input
from tests.faults.workload import dataset_data
from tests.support.node_process import NodeProcess, start_node

MAX_UPLOAD = 2_000_000  # bytes: the node's max_upload_bytes in these tests


@pytest.fixture(scope="module")
def small_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = start_node(
        tmp_path_factory.mktemp("node"),
        env={"SUBSTRA_WORKER_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)},
    )
    yield node
    node.stop()


@pytest.fixture(scope="module")
def dataset_key(small_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> str:
    client = Client(url=small_node.url, token=small_node.token)
    return client.add_dataset(dataset_data(tmp_path_factory.mktemp("ds"), "bad input"))["key"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BundledRedis]:
    server = BundledRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


class Tally:
    """Bad inputs tried and refused, per category, written to the reliability results."""

    def __init__(self) -> None:
        self.tried: Counter = Counter()
        self.refused: Counter = Counter()

    def add(self, category: str, refused: bool) -> None:
        self.tried[category] += 1
        self.refused[category] += int(refused)


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    t = Tally()
    yield t
    for category, tried in t.tried.items():
        record_bad_input(category, tried, t.refused[category])


def node_still_answers(node: NodeProcess) -> bool:
    import requests

    response = requests.get(f"{node.url}/node/", headers=node.headers, timeout=10)
    return response.status_code == 200 and node.process.poll() is None


def tmp_files(node: NodeProcess) -> list[Path]:
    """Files left in the node's temporary folders (uploads spool, tmp, cache staging)."""
    node_dir = node.node_dir
    found = []
    for name in ("uploads", "tmp"):
        found += [p for p in (node_dir / name).rglob("*") if p.is_file()]
    return found
