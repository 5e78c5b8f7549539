"""Fault 5: the watcher SIGKILLed and started again while folders keep being dropped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from substra_worker import Client
from substra_worker.jobs import FINAL_STATES, JobState
from substra_worker.node.keys import data_sample_key
from substra_worker.submitter import Submitter
from substra_worker.watcher.state import WatchState
from tests.assets import description_path, opener_path
from tests.faults.conftest import Target
from tests.faults.results import record_scenario
from tests.faults.workload import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

FOLDERS = 250


def write_folder(folder: Path, tag: str) -> None:
    folder.mkdir(parents=True)
    (folder / "data.csv").write_text(f"# {tag}\n1.0,3.0\n2.0,5.0\n")


class WatcherProcess:
    """``substra-worker watch ROOT`` as a real process."""

    def __init__(self, root: Path, env: dict[str, str], log: Path):
        self.root, self.env, self.log = root, env, log
        self.process: subprocess.Popen | None = None

    def start(self) -> WatcherProcess:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "substra_worker", "watch", str(self.root)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        wait_until(
            lambda: "substra-worker watch: watching" in self.log.read_text()[offset:],
            30,
            "the watcher to start",
        )
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


def test_watcher_killed_and_restarted_while_folders_are_dropped(
    settings, node, start_worker, tmp_path
):
    client = Client(url=node.url, token=node.token)
    start_worker(settings, Target(node.url, node.token), concurrency=2)
    root = tmp_path / "watch"
    channel = root / "channel"
    channel.mkdir(parents=True)
    shutil.copy(opener_path(tmp_path / "openers", variant=4242), channel / "opener.py")
    shutil.copy(description_path("# watched\n", tmp_path), channel / "description.md")
    (channel / "channel.json").write_text(
        json.dumps(
            {
                "dataset": {
                    "name": "watched",
                    "type": "csv",
                    "data_opener": "opener.py",
                    "description": "description.md",
                }
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBSTRA_WORKER_")}
    env.update(
        SUBSTRA_WORKER_REDIS_URL=settings.redis_url,
        SUBSTRA_WORKER_QUIET_PERIOD="0.3",
        SUBSTRA_WORKER_RESCAN_INTERVAL="2",
        SUBSTRA_WORKER_BATCH_WINDOW="0.3",
        SUBSTRA_WORKER_BATCH_SIZE="20",
    )
    watcher = WatcherProcess(root, env, tmp_path / "watch.log").start()
    rclient = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    state = WatchState(rclient, root)

    def registered() -> int:
        return state.counts().get("registered", 0)

    # Given folders dropped steadily (half written in place, half built aside and renamed in);
    # the last 100 wait for the restart, so that drops surely go on across it
    staging = tmp_path / "staging"
    dropped = threading.Event()
    restarted = threading.Event()
    count = [0]

    def drop() -> None:
        for i in range(FOLDERS):
            if i == FOLDERS - 100:
                restarted.wait(60)
            count[0] = i
            if i % 2:
                write_folder(staging / f"f{i}", f"watched {i}")
                os.rename(staging / f"f{i}", channel / f"f{i}")
            else:
                write_folder(channel / f"f{i}", f"watched {i}")
            time.sleep(0.02)
        dropped.set()

    dropper = threading.Thread(target=drop, daemon=True)
    dropper.start()
    try:
        # When the watcher is SIGKILLed once its first folders are registered
        wait_until(lambda: registered() >= 10, 60, "the first registered folders")
        watcher.kill()
        at_kill = state.counts()
        dropped_at_kill = count[0]
        time.sleep(1.0)  # folders keep arriving while no watcher runs
        # and started again while the drops go on
        watcher.start()
        restarted.set()
        assert not dropped.is_set()
        dropper.join(60)
        # Then every folder is registered once, linked to the channel's dataset
        wait_until(lambda: registered() == FOLDERS, 120, f"{FOLDERS} registered folders")
        time.sleep(1.0)  # anything sent twice would show now
    finally:
        code = watcher.stop()
    assert code == 0

    records = state.folders()
    folders = sorted(p for p in channel.iterdir() if p.is_dir())
    expected = {data_sample_key(p) for p in folders}
    assert len(expected) == FOLDERS
    dataset_key = state.channels()[0].dataset_keys[0]
    linked = Counter(
        client.get_dataset(dataset_key)["trainDataSampleKeys"]
        + client.get_dataset(dataset_key)["testDataSampleKeys"]
    )
    on_node = Counter(s["key"] for s in client.list_data_sample())
    with Submitter(settings, producer="watcher") as submitter:
        jobs = submitter.list_jobs(limit=10_000)
    submitted = Counter(
        p
        for j in jobs
        if j.operation.startswith("add_data")
        for p in (j.envelope["payload"].get("paths") or [j.envelope["payload"].get("path")])
    )
    statuses = Counter(r.status for r in records)
    outcome = {
        "submitted": FOLDERS,
        "succeeded": statuses["registered"],
        "failed": statuses["failed"] + statuses["rejected"],
        "lost": FOLDERS
        - statuses["registered"]
        - statuses["failed"]
        - statuses["rejected"]
        + len(expected - set(on_node)),
        "duplicated": sum(n - 1 for n in on_node.values() if n > 1)
        + sum(n - 1 for n in submitted.values() if n > 1),
        "orphaned": len(set(on_node) - expected),
    }
    record_scenario(
        {
            "scenario": "watcher-killed",
            "title": f"Watcher SIGKILLed and restarted while {FOLDERS} folders are dropped",
            "unit": "folders",
            **outcome,
            "jobs": len(jobs),
            "registered_at_kill": at_kill.get("registered", 0),
            "dropped_at_kill": dropped_at_kill,
        }
    )
    assert outcome == {
        "submitted": FOLDERS,
        "succeeded": FOLDERS,
        "failed": 0,
        "lost": 0,
        "duplicated": 0,
        "orphaned": 0,
    }, outcome
    assert at_kill.get("registered", 0) < FOLDERS // 2, at_kill
    assert set(linked) == expected and max(linked.values()) == 1
    assert {r.sample_key for r in records} == expected
    assert all(j.state in FINAL_STATES for j in jobs)
    assert [j.id for j in jobs if j.state is not JobState.SUCCEEDED] == []
    rclient.close()
