"""The README's main-job command: ``substra-worker up`` ingests watch_dirs/example, stops, resumes.

``./dev up`` installs into .venv and runs ``substra-worker up``; here the installed
entry point runs in a fresh folder holding a copy of ``watch_dirs/``, as a
subprocess on embedded defaults (bundled Redis, embedded node). The scripted
scenario of ``examples/`` runs against that stack too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from substra_worker.node.node import Node
from substra_worker.redis_server import free_port
from substra_worker.watcher.state import WatchState
from tests.ops.conftest import REPO, VENV_BIN, clean_env, stop_process, wait_until

EXAMPLE_SAMPLES = 5  # folders of watch_dirs/example
BANNER = "substra-worker is up"
STOPPED = "[up] stopped"


class Up:
    """One ``substra-worker up`` process in ``cwd``, its output in a log file."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.cwd = cwd
        self.env = env
        self.runs = 0
        self.process: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.cwd / f"up-{self.runs}.log"

    def start(self) -> Up:
        self.runs += 1
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "substra-worker"), "up"],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(lambda: BANNER in self.output() or self.process.poll() is not None, 120, "up")
        assert self.process.poll() is None, self.output()
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> int:
        return stop_process(self.process)

    # --- what the stack did ------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.cwd / ".substra-worker"

    def redis(self) -> redis.Redis:
        runtime = json.loads((self.state_dir / "runtime.json").read_text())
        return redis.Redis.from_url(runtime["redis_url"], decode_responses=True)

    def folder_counts(self) -> dict[str, int]:
        client = self.redis()
        try:
            return WatchState(client, self.cwd / "watch_dirs").counts()
        finally:
            client.close()

    def job_ids(self) -> set[str]:
        client = self.redis()
        try:
            return set(client.zrange("sw:jobs", 0, -1))
        finally:
            client.close()

    def node_samples(self) -> list[str]:
        """Sample keys, read from the node's own store (no token needed on this machine)."""
        node = Node(self.state_dir / "node")
        try:
            return sorted(s["key"] for s in node.list("data_sample"))
        finally:
            node.close()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    cwd = tmp_path_factory.mktemp("up")
    shutil.copytree(REPO / "watch_dirs", cwd / "watch_dirs")
    # embedded defaults, with the API on a free port so that parallel runs do not collide
    env = clean_env(api_port=free_port(), worker_concurrency=2)
    stack = Up(cwd, env).start()
    yield stack
    if stack.process is not None and stack.process.poll() is None:
        stack.stop()


@pytest.mark.timeout(150)
def test_up_ingests_the_example_channel_and_runs_the_scenario(up):
    # Given `substra-worker up` started in a folder with watch_dirs/
    text = up.output()
    assert "Redis" in text and "Node" in text and "watch_dirs" in text

    # Then the five example folders become data samples on the embedded node
    wait_until(
        lambda: up.folder_counts().get("registered") == EXAMPLE_SAMPLES, 90, "example samples"
    )
    assert len(up.node_samples()) == EXAMPLE_SAMPLES

    # And the scripted scenario of examples/ runs against it and prints the leaderboard
    scenario = subprocess.run(
        [sys.executable, str(REPO / "examples" / "scenario.py"), "--timeout", "90"],
        cwd=up.cwd,
        env=up.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert scenario.returncode == 0, scenario.stdout + scenario.stderr
    board = scenario.stdout.split("leaderboard of objective", 1)[1].splitlines()
    rows = [line.split() for line in board[2:] if line.strip()]
    assert [row[2] for row in rows] == ["linear-2", "linear-1", "constant"], scenario.stdout
    perfs = [float(row[0]) for row in rows]
    assert perfs == sorted(perfs, reverse=True) and perfs[0] > -1.0


@pytest.mark.timeout(200)
def test_ctrl_c_stops_cleanly_and_the_next_up_resumes(up):
    wait_until(
        lambda: up.folder_counts().get("registered") == EXAMPLE_SAMPLES, 90, "example samples"
    )
    samples, jobs = up.node_samples(), up.job_ids()

    # When Ctrl-C reaches `up`
    code = up.stop()

    # Then it exits 0 with its stop message, and leaves nothing running
    assert code == 0, up.output()[-3000:]
    assert STOPPED in up.output()
    assert not (up.state_dir / "runtime.json").exists()

    # When `up` starts again on the same state folder
    up.start()
    try:
        wait_until(lambda: "watching" in up.output(), 60, "the watcher to rescan")
        wait_until(lambda: up.folder_counts().get("registered") == EXAMPLE_SAMPLES, 30, "state")
        # the rescan had time to see every folder again (quiet period + batch window)
        time.sleep(5)

        # Then nothing was registered or submitted twice
        assert up.node_samples() == samples
        assert up.job_ids() == jobs
        assert up.folder_counts() == {"registered": EXAMPLE_SAMPLES}
    finally:
        code = up.stop()
    assert code == 0 and STOPPED in up.output()
