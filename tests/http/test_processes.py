"""``substra-worker node --processes N``: several processes serve one port and one state."""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from substra_worker import pids
from tests.http.conftest import Api, add_algo, add_dataset, add_samples, wait_for
from tests.support.node_process import NodeProcess, start_node

REQUEST_LINE = re.compile(r"\[(\d+)\] INFO substra_worker\.node\.server (GET|POST) (\S+) (\d+)")


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(p) for p in text]
    return out


@pytest.fixture
def node2(tmp_path: Path):
    process = start_node(tmp_path / "state", extra_args=["--processes", "2"])
    yield process
    process.stop()


def served_by(node: NodeProcess) -> dict[int, int]:
    """Requests answered per process id, from the node's log."""
    counts: dict[int, int] = {}
    for match in REQUEST_LINE.finditer(node.log_text()):
        pid = int(match.group(1))
        counts[pid] = counts.get(pid, 0) + 1
    return counts


def test_two_processes_share_the_port_the_tokens_and_the_stores(node2, tmp_path):
    # Given a node served by two processes
    main = node2.process.pid
    (child,) = children(main)
    api = Api(node2)
    dataset = add_dataset(api, tmp_path)

    # When many uploads arrive at once, each on a new connection
    def upload(i: int) -> list[str]:
        return add_samples(api, tmp_path / f"batch-{i}", dataset, 3)

    with ThreadPoolExecutor(8) as pool:
        keys = [k for batch in pool.map(upload, range(24)) for k in batch]

    # Then both processes answered, with the token one of them issued,
    # and every sample is registered once, whoever received it
    counts = served_by(node2)
    assert set(counts) == {main, child}, counts
    listed = api.get("/data_sample/").json()  # a flat list, unlike the other assets
    assert sorted(s["key"] for s in listed) == sorted(keys)
    assert len(set(keys)) == 72
    body = api.get(f"/data_manager/{dataset}/").json()
    assert len(body["trainDataSampleKeys"]) == 72


def test_tuples_created_through_any_process_run(node2, tmp_path):
    api = Api(node2)
    dataset = add_dataset(api, tmp_path)
    samples = add_samples(api, tmp_path / "train", dataset, 4)
    algo = add_algo(api, tmp_path)
    keys = []
    for sample in samples:  # one tuple per sample: four keys
        response = api.post(
            "/traintuple/",
            json={
                "algo_key": algo,
                "data_manager_key": dataset,
                "train_data_sample_keys": [sample],
            },
            headers={"Connection": "close"},
        )
        assert response.status_code == 201, response.text
        keys.append(response.json()["pkhash"])
    for key in keys:
        assert api.wait_status(f"/traintuple/{key}/")["status"] == "done"


def test_sigterm_stops_every_process(node2):
    main = node2.process.pid
    (child,) = children(main)
    assert node2.stop() == 0
    wait_for(lambda: not pids.alive(child), timeout=20)


def test_a_serving_process_that_dies_stops_the_node(node2):
    # so that a supervisor (up) restarts it whole, instead of serving at half strength
    main = node2.process.pid
    (child,) = children(main)
    os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while node2.process.poll() is None:
        assert time.monotonic() < deadline, "the node kept running without its process"
        time.sleep(0.1)
    assert node2.process.returncode != 0
    assert "exited" in node2.log_text()
