"""The Node as a served node uses it: background runners, wake/stop, cancel across
processes, atomic claims from several processes, recovery of orphaned claims."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from substra_worker.node.node import Node
from tests import assets
from tests.node.conftest import PUBLIC

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Setup:
    """A dataset with samples and algos registered directly on a Node."""

    def __init__(self, node: Node, tmp: Path):
        self.node = node
        self.tmp = tmp
        self.dataset = node.add_dataset(
            {"name": "d", "type": "csv", "permissions": PUBLIC},
            {
                "data_opener": assets.opener_path(),
                "description": assets.description_path("dataset", tmp),
            },
        )["pkhash"]
        folders = assets.make_sample_folders(tmp / "train", 2, seed=3)
        self.samples = [
            s["pkhash"]
            for s in node.add_data_samples(
                {"paths": [str(f) for f in folders], "data_manager_keys": [self.dataset]},
                local_copy=True,
            )
        ]
        self.algos: dict[str, str] = {}

    def algo(self, kind: str, **kwargs) -> str:
        name = kind + repr(sorted(kwargs.items()))
        if name not in self.algos:
            archive = assets.make_algo_archive(kind, self.tmp / "archives", **kwargs)
            self.algos[name] = self.node.add_algo(
                assets.ASSET_KIND[kind],
                {"name": name, "permissions": PUBLIC},
                {"file": archive, "description": assets.description_path(name, self.tmp)},
            )["pkhash"]
        return self.algos[name]

    def train(self, algo: str, ident: str = "t", parents=()) -> dict:
        return {
            "traintuple_id": ident,
            "algo_key": algo,
            "data_manager_key": self.dataset,
            "train_data_sample_keys": self.samples,
            "in_models_ids": list(parents),
        }


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path / "state", concurrency=2, base_url="http://127.0.0.1:9")
    yield n
    n.close()


@pytest.fixture
def setup(node: Node, tmp_path: Path) -> Setup:
    return Setup(node, tmp_path)


def test_background_runners_compute_asynchronously(node: Node, setup: Setup):
    # Given a served node (background runners)
    node.start()
    algo = setup.algo("algo")
    # When a plan is posted, the answer comes at once, before anything ran
    plan = node.add_compute_plan(
        {"traintuples": [setup.train(algo, "a"), setup.train(algo, "b", ["a"])]}
    )
    assert plan["doneCount"] == 0 and plan["status"] in ("todo", "doing")
    # Then the runners take it to done
    plan_id = plan["computePlanID"]
    done = wait_for(
        lambda: (p := node.get("compute_plan", plan_id))["status"] == "done" and p,
        what="the plan to finish",
    )
    assert done["doneCount"] == 2
    child = node.get("traintuple", done["IDToKey"]["b"])
    assert child["rank"] == 1
    # storage addresses are absolute URLs on the node
    assert child["outModel"]["storageAddress"].startswith("http://127.0.0.1:9/model/")
    assert node.get("algo", algo)["content"]["storageAddress"] == (
        f"http://127.0.0.1:9/algo/{algo}/file/"
    )
    node.stop()


def test_runs_in_parallel_up_to_concurrency(node: Node, setup: Setup):
    sleeping = setup.algo("sleeping_algo", sleep=2)
    node.start()
    plan = node.add_compute_plan(
        {
            "traintuples": [
                {**setup.train(sleeping, "a"), "train_data_sample_keys": setup.samples[:1]},
                {**setup.train(sleeping, "b"), "train_data_sample_keys": setup.samples[1:]},
                setup.train(sleeping, "c"),
            ]
        }
    )
    keys = list(plan["IDToKey"].values())

    def statuses() -> list[str]:
        return [node.get("traintuple", k)["status"] for k in keys]

    # two run at once, never three
    seen_two = False
    deadline = time.monotonic() + 30
    while not all(s == "done" for s in statuses()):
        running = statuses().count("doing")
        assert running <= 2
        seen_two = seen_two or running == 2
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert seen_two


def test_cancel_from_another_process_kills_the_step(node: Node, setup: Setup, tmp_path: Path):
    sleeping = setup.algo("sleeping_algo", sleep=60)
    node.start()
    plan = node.add_compute_plan(
        {"traintuples": [setup.train(sleeping, "slow"), setup.train(sleeping, "next", ["slow"])]}
    )
    slow = plan["IDToKey"]["slow"]
    pids_file = tmp_path / "state" / "sandboxes" / slow / "work" / assets.PIDS_FILE
    wait_for(pids_file.is_file, what="the sleeping step to start")
    pids = [int(p) for p in pids_file.read_text().split()]
    # When another process cancels the plan through its own Node on the same folder
    code = f"""
        from substra_worker.node.node import Node
        node = Node({str(tmp_path / "state")!r})
        print(node.cancel_compute_plan({plan["computePlanID"]!r})["status"])
        node.close()
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "canceled"
    # Then the running step is killed (whole process group), and the tuples stay canceled
    wait_for(lambda: not any(_alive(p) for p in pids), timeout=10, what="the step to die")
    wait_for(lambda: not pids_file.parent.exists(), timeout=10, what="the sandbox removal")
    assert node.get("traintuple", slow)["status"] == "canceled"
    assert node.get("traintuple", plan["IDToKey"]["next"])["status"] == "canceled"
    assert node.get("compute_plan", plan["computePlanID"])["status"] == "canceled"


def test_stop_gives_running_tuples_back(tmp_path: Path):
    state = tmp_path / "state"
    first = Node(state)
    setup = Setup(first, tmp_path)
    sleeping = setup.algo("sleeping_algo", sleep=1.5)
    first.start()
    plan = first.add_compute_plan({"traintuples": [setup.train(sleeping, "t")]})
    key = plan["IDToKey"]["t"]
    wait_for(lambda: first.get("traintuple", key)["status"] == "doing", what="the step to start")
    # When the node stops while the step runs
    first.close()
    # Then the tuple is todo again (not doing, not failed), and another node runs it
    second = Node(state)
    try:
        assert second.get("traintuple", key)["status"] == "todo"
        second.run_pending()
        assert second.get("traintuple", key)["status"] == "done"
    finally:
        second.close()


def test_claims_are_atomic_across_processes(node: Node, setup: Setup, tmp_path: Path):
    algo = setup.algo("algo")
    keys = [
        node.add_compute_plan({"traintuples": [setup.train(algo)]})["IDToKey"]["t"]
        for _ in range(40)
    ]
    go = tmp_path / "go"
    code = f"""
        import json, os, time
        from substra_worker.node.node import Node
        node = Node({str(tmp_path / "state")!r})
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        got = []
        while (claimed := node._scheduler.claim()) is not None:
            got.append(claimed[0]["key"])
        print(json.dumps(got))
        node.close()
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    time.sleep(1.0)  # let them open the database and wait
    go.touch()
    outputs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    claimed = [k for out in outputs for k in out]
    assert sorted(claimed) == sorted(keys)  # every tuple claimed exactly once
    assert all(node.get("traintuple", k)["status"] == "doing" for k in keys)


def test_orphaned_claims_are_recovered(node: Node, setup: Setup):
    algo = setup.algo("algo")
    key = node.add_compute_plan({"traintuples": [setup.train(algo)]})["IDToKey"]["t"]
    scheduler = node._scheduler
    # a claim whose process died: its heartbeat stops
    for attempt in range(1, 4):
        claimed, _ = scheduler.claim()
        assert claimed["key"] == key and claimed["attempts"] == attempt
        assert scheduler.recover_stale(stale_after=60) == []  # still beating
        assert scheduler.recover_stale(stale_after=-1) == [key]
        expected = "todo" if attempt < 3 else "failed"
        assert node.get("traintuple", key)["status"] == expected
    assert "stopped 3 times" in node.get("traintuple", key)["log"]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_from_config_file_in_debug_mode_needs_no_profile(debug_env, tmp_path):
    from substra_worker import Client

    # Given no ~/.substra file at all: a debug client is built from it anyway
    client = Client.from_config_file(
        "nowhere", tmp_path / "no-config", tmp_path / "no-tokens", debug=True
    )
    # Then it drives the embedded node of the settings' state folder
    assert client.list_node() == [{"id": "MyOrg1MSP", "isCurrent": True}]
    assert client.list_algo() == []
