"""The watcher against the real queue: Redis, a Celery worker and the embedded node over HTTP.

Each test drops folders into its own watch root and checks what the node holds
at the end, read back through the Client over HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from substra_worker.node.keys import data_sample_key
from substra_worker.submitter import Submitter
from tests.assets import description_path, opener_path
from tests.watcher.conftest import state_of, wait_for

pytestmark = pytest.mark.timeout(240)

_variants = iter(range(7000, 8000))


def write_sample(folder: Path, tag: str, *, slow: float = 0.0, files: int = 1) -> Path:
    """A sample folder with content unique to ``tag``; ``slow`` seconds between its writes."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        path = folder / f"part{i}.csv"
        with open(path, "w") as f:
            f.write(f"# {tag} part {i}\n")
            if slow:
                f.flush()
                time.sleep(slow)
            f.write("1.0,3.0\n2.0,5.0\n")
    return folder


def own_dataset_channel(root: Path, name: str = "own", **extra) -> tuple[Path, str]:
    """A channel that registers its dataset (opener + description) before its samples."""
    channel = root / name
    channel.mkdir()
    opener = opener_path(root.parent / "openers", variant=next(_variants))
    shutil.copy(opener, channel / "opener.py")
    shutil.copy(description_path(), channel / "description.md")
    config = {
        "dataset": {
            "name": f"watched {root.name}",
            "type": "csv",
            "data_opener": "opener.py",
            "description": "description.md",
            "permissions": {"public": True, "authorized_ids": []},
        },
        **extra,
    }
    (channel / "channel.json").write_text(json.dumps(config))
    return channel, data_sample_key_of_opener(channel / "opener.py")


def data_sample_key_of_opener(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def keyed_channel(stack, root: Path, name: str = "keyed", **extra) -> tuple[Path, str]:
    """A channel bound to a dataset registered beforehand, by key."""
    client = stack.client()
    dataset = client.add_dataset(
        {
            "name": f"pre-registered {root.name}",
            "type": "csv",
            "data_opener": str(opener_path(root.parent / "openers", variant=next(_variants))),
            "description": str(description_path()),
            "permissions": {"public": True, "authorized_ids": []},
        }
    )
    channel = root / name
    channel.mkdir()
    (channel / "channel.json").write_text(json.dumps({"dataset_key": dataset["key"], **extra}))
    return channel, dataset["key"]


def linked_samples(stack, dataset_key: str) -> list[str]:
    dataset = stack.client().get_dataset(dataset_key)
    return list(dataset["trainDataSampleKeys"]) + list(dataset["testDataSampleKeys"])


def registered(stack, root: Path) -> int:
    return sum(1 for r in state_of(stack, root).folders() if r.status == "registered")


def test_two_hundred_folders_with_a_restart_half_way(stack, new_root, tmp_path):
    root = new_root()
    channel, dataset_key = own_dataset_channel(root)
    staging = root.parent / f"{root.name}-staging"  # same filesystem: rename is atomic
    env = stack.env()
    env.update(
        SUBSTRA_WORKER_QUIET_PERIOD="0.4",
        SUBSTRA_WORKER_RESCAN_INTERVAL="2",
        SUBSTRA_WORKER_BATCH_WINDOW="0.3",
    )
    log_path = tmp_path / "watch.log"

    def start_cli_watcher() -> subprocess.Popen:
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "substra_worker", "watch", str(root)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def in_flight() -> bool:
        statuses = {r.status for r in state_of(stack, root).folders()}
        return bool(statuses & {"submitting", "queued", "registered"})

    # Given a watcher process on the root
    first = start_cli_watcher()
    try:
        wait_for(
            lambda: "substra-worker watch: watching" in log_path.read_text(),
            30,
            what="the watcher to start",
        )
        # When 150 folders arrive at once: 90 copied in bulk, 30 written slowly,
        # 30 built elsewhere and moved in with an atomic rename
        slow_writers = [
            threading.Thread(
                target=write_sample,
                args=(channel / f"slow{i}", f"{root.name} slow {i}"),
                kwargs={"slow": 0.05, "files": 4},
            )
            for i in range(30)
        ]
        for t in slow_writers:
            t.start()
        for i in range(40):
            write_sample(staging / f"moved{i}", f"{root.name} moved {i}", files=2)
        for i in range(90):
            write_sample(channel / f"bulk{i}", f"{root.name} bulk {i}")
        for i in range(30):
            os.rename(staging / f"moved{i}", channel / f"moved{i}")
        for t in slow_writers:
            t.join()
        # and the watcher is killed as soon as its first jobs are on their way
        wait_for(in_flight, 60, 0.02, what="the first jobs")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    assert registered(stack, root) < 150, "the restart came too late to mean anything"
    # and 50 more arrive while no watcher runs
    for i in range(30, 40):
        os.rename(staging / f"moved{i}", channel / f"moved{i}")
    for i in range(90, 130):
        write_sample(channel / f"bulk{i}", f"{root.name} bulk {i}")

    # Then a new watcher picks up where it stopped
    second = start_cli_watcher()
    try:
        wait_for(lambda: registered(stack, root) == 200, 120, 0.3, "200 registered folders")
        time.sleep(1.0)  # anything sent twice would show now
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0

    # exactly 200 samples, linked to the channel's dataset, each the folder it came from
    folders = sorted(p for p in channel.iterdir() if p.is_dir())
    expected = {data_sample_key(p) for p in folders}
    assert len(expected) == 200
    linked = linked_samples(stack, dataset_key)
    assert len(linked) == 200 and set(linked) == expected
    records = state_of(stack, root).folders()
    assert len(records) == 200
    assert {r.sample_key for r in records} == expected
    assert all(r.sample_key == data_sample_key(Path(r.path)) for r in records)
    # one add_dataset job and no sample submitted twice
    submitter = Submitter(stack.settings(), producer="watcher")
    try:
        jobs = [
            j
            for j in submitter.list_jobs(limit=10_000)
            if any(str(root) in str(p) for p in _paths_of(j))
        ]
        submitted = [p for j in jobs for p in _paths_of(j) if j.operation.startswith("add_data")]
        assert len(submitted) == len(set(submitted)) == 200
    finally:
        submitter.close()


def _paths_of(job) -> list[str]:
    payload = job.envelope.get("payload", {})
    return list(payload.get("paths") or ([payload["path"]] if payload.get("path") else []))


def test_redrop_changes_and_server_path_mode(stack, new_root, run_watcher):
    root = new_root()
    channel, dataset_key = keyed_channel(stack, root, mode="server_path", test_only=True)
    for i in range(6):
        write_sample(channel / f"s{i}", f"{root.name} {i}")
    w = run_watcher(root)
    wait_for(lambda: registered(stack, root) == 6, 60, what="6 registered folders")
    assert len(linked_samples(stack, dataset_key)) == 6
    assert len(stack.client().get_dataset(dataset_key)["testDataSampleKeys"]) == 6
    jobs_before = w.watcher.gateway.submitter.stats()

    # the same content dropped again: under a new name, and under its old name
    shutil.copytree(channel / "s1", channel / "again-s1")
    shutil.rmtree(channel / "s2")
    write_sample(channel / "s2", f"{root.name} 2")
    wait_for(
        lambda: (
            (r := w.state.folder("own/again-s1") or w.state.folder("keyed/again-s1"))
            and r.status == "duplicate"
        ),
        30,
        what="the copy to be recognised",
    )
    time.sleep(1.5)  # several quiet periods and batch windows
    assert w.state.folder("keyed/s2").status == "registered"
    assert w.watcher.gateway.submitter.stats() == jobs_before
    assert len(linked_samples(stack, dataset_key)) == 6

    # a folder changed after registration becomes a new sample, and its record says so
    old_key = w.state.folder("keyed/s3").sample_key
    (channel / "s3" / "extra.csv").write_text("9.0,19.0\n")
    wait_for(
        lambda: (
            w.state.folder("keyed/s3").sample_key not in (None, old_key)
            and w.state.folder("keyed/s3").status == "registered"
        ),
        30,
        what="the changed folder to be registered again",
    )
    rec = w.state.folder("keyed/s3")
    assert rec.previous[-1]["sample_key"] == old_key
    assert rec.sample_key == data_sample_key(channel / "s3")
    assert len(linked_samples(stack, dataset_key)) == 7
    assert w.alive()


def test_bad_inputs_are_recorded_and_the_watcher_keeps_going(
    stack, new_root, run_watcher, tmp_path, monkeypatch
):
    from substra_worker.watcher import readiness

    root = new_root()
    channel, dataset_key = keyed_channel(stack, root)
    outside = write_sample(tmp_path / "outside", "outside")
    w = run_watcher(root)

    # an empty folder, a stray file, a link leaving the root, an unreadable file,
    # a folder deleted before it settled, a channel without config, odd names
    (channel / "empty").mkdir()
    (channel / "notes.txt").write_text("not a sample")
    write_sample(channel / "escape", "escape")
    os.symlink(outside / "part0.csv", channel / "escape" / "link.csv")
    write_sample(channel / "unreadable", "unreadable")
    locked = channel / "unreadable" / "part0.csv"
    if os.geteuid() == 0:
        # root reads any file: refuse that one file at the one place files are opened
        real_open = readiness.open_for_hash

        def refuse(path):
            if path == str(locked):
                raise PermissionError(13, "Permission denied", path)
            return real_open(path)

        monkeypatch.setattr(readiness, "open_for_hash", refuse)
    else:
        os.chmod(locked, 0)
    (root / "no-config").mkdir()
    write_sample(root / "no-config" / "x", "no config")
    write_sample(channel / "odd\nname", "odd")
    write_sample(channel / 'quote"name', "quote")
    brief = channel / "brief"
    brief.mkdir()
    (brief / "part0.csv").write_text("partial")
    time.sleep(0.1)
    shutil.rmtree(brief)

    def reasons():
        recs = {r.name: r for r in w.state.folders()}
        names = ["empty", "notes.txt", "escape", "unreadable", "odd\nname", 'quote"name', "brief"]
        if all(n in recs and recs[n].status in ("rejected", "vanished") for n in names):
            return {n: recs[n].reason for n in names}
        return None

    got = wait_for(reasons, 30, what="a reason for each bad input")
    assert got["empty"] == "empty folder: no file to register"
    assert got["notes.txt"].startswith("stray file at channel level")
    assert got["escape"] == "symlink 'link.csv' points outside the watch root"
    assert got["unreadable"].startswith("file 'part0.csv' is unreadable")
    assert got["odd\nname"] == "folder name contains control characters"
    assert got['quote"name'] == "folder name contains a quote or a backslash"
    assert got["brief"] == "deleted or moved away before it was registered"
    channels = {c.name: c for c in w.state.channels()}
    assert channels["no-config"].reason.startswith("channel has no channel.json")
    assert not channels["no-config"].ok

    # the watcher is alive and still registers good folders
    assert w.alive()
    write_sample(channel / "good", f"{root.name} good")
    wait_for(
        lambda: (r := w.state.folder("keyed/good")) and r.status == "registered",
        30,
        what="a good folder after the bad ones",
    )
    assert len(linked_samples(stack, dataset_key)) == 1
    if os.geteuid() != 0:
        os.chmod(locked, 0o644)


def test_polling_mode_archive_and_observer_restart(stack, new_root, run_watcher, tmp_path):
    root = new_root()
    channel, dataset_key = keyed_channel(stack, root)
    archive = tmp_path / "archive"
    # rescans far apart: only the polling observer can see these folders in time
    w = run_watcher(root, polling=True, rescan_interval=600.0, archive_to=archive)
    assert w.watcher.observer.polling
    for i in range(5):
        write_sample(channel / f"p{i}", f"{root.name} p{i}")
    write_sample(channel / "m", f"{root.name} marked")
    (channel / "m.ready").write_text("")  # a marker beside it: ready without a quiet period
    wait_for(lambda: registered(stack, root) == 6, 60, what="6 folders seen by polling")
    assert len(linked_samples(stack, dataset_key)) == 6
    wait_for(lambda: not any(p.is_dir() for p in channel.iterdir()), 10, what="archiving")
    assert sorted(p.name for p in (archive / "keyed").iterdir()) == [
        "m",
        "m.ready",
        "p0",
        "p1",
        "p2",
        "p3",
        "p4",
    ]
    assert w.state.folder("keyed/p0").archived_to == str(archive / "keyed" / "p0")

    # the observer dies: a new one is started and events flow again
    w.watcher.observer.observer.stop()
    write_sample(channel / "after", f"{root.name} after")
    wait_for(lambda: registered(stack, root) == 7, 30, what="a folder after the observer died")
    assert w.watcher.observer.restarts >= 1
    assert w.alive()


def test_content_already_on_the_node_is_linked_not_duplicated(stack, new_root, run_watcher):
    root = new_root()
    channel, dataset_key = keyed_channel(stack, root)
    _, other_key = keyed_channel(stack, root, name="other")
    # a sample registered by someone else, under another dataset, before the watcher ran
    elsewhere = write_sample(root.parent / f"{root.name}-elsewhere" / "x", f"{root.name} shared")
    existing = stack.client().add_data_sample(
        {"path": str(elsewhere), "data_manager_keys": [other_key], "test_only": False}
    )
    shutil.copytree(elsewhere, channel / "shared")
    for i in range(3):
        write_sample(channel / f"new{i}", f"{root.name} new {i}")
    w = run_watcher(root)
    wait_for(lambda: registered(stack, root) == 4, 60, what="4 registered folders")
    # the batch met the existing sample (409): its folders went one by one, the
    # existing sample was accepted and linked to this channel's dataset
    linked = set(linked_samples(stack, dataset_key))
    assert existing["pkhash"] in linked and len(linked) == 4
    assert set(linked_samples(stack, other_key)) == {existing["pkhash"]}
    rec = w.state.folder("keyed/shared")
    assert rec.sample_key == existing["pkhash"]
    assert rec.failures[0]["reason"].startswith("AlreadyExists"), rec.failures
