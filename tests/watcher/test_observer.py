"""The folder observer on real folders: what watchdog reports, and what the watcher makes of it.

The watches are not recursive (the root and each channel): these tests check
which (channel, entry) pairs are reported, that nothing inside a sample folder
is, and that the watcher still sees every way folders arrive without a
periodic rescan (slow writes by their quiet period, renames, bulk copies, new
channels). The queue is faked (fakes.FakeSubmitter): a folder is seen when its
job is submitted.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time

import pytest

from substra_worker.settings import Settings
from substra_worker.watcher import observer as observer_module
from substra_worker.watcher.observer import FolderObserver
from substra_worker.watcher.service import Watcher
from substra_worker.watcher.state import WatchState
from substra_worker.watcher.submit import JobGateway
from tests.watcher.conftest import wait_for
from tests.watcher.fakes import FakeSubmitter

pytestmark = pytest.mark.timeout(60)


class Reports:
    """The (channel, entry) pairs an observer reports."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, str | None]] = queue.Queue()

    def __call__(self, channel: str, entry: str | None) -> None:
        self.queue.put((channel, entry))

    def until(self, expected: tuple[str, str | None], timeout: float = 5.0) -> set:
        """Every report up to ``expected`` (fail if it does not come)."""
        seen: set = set()
        deadline = time.monotonic() + timeout
        while expected not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{expected} not reported; got {seen}")
            try:
                seen.add(self.queue.get(timeout=left))
            except queue.Empty:
                continue
        return seen

    def quiet(self, seconds: float = 0.3) -> set:
        """What is reported in the next ``seconds``."""
        time.sleep(seconds)
        seen = set()
        while not self.queue.empty():
            seen.add(self.queue.get())
        return seen


@pytest.fixture(params=[False, True], ids=["inotify", "polling"])
def watched(request, tmp_path):
    root = tmp_path / "root"
    (root / "c").mkdir(parents=True)
    reports = Reports()
    observer = FolderObserver(root, reports, polling=request.param, poll_interval=0.1)
    observer.start()
    observer.watch_channel("c")
    yield root, reports, observer
    observer.stop()


def test_entries_are_reported_by_channel_not_what_happens_inside_them(watched):
    root, reports, _ = watched
    (root / "c" / "s1").mkdir()
    reports.until(("c", "s1"))
    (root / "c" / "s1.ready").write_text("")
    reports.until(("c", "s1.ready"))
    (root / "c" / "channel.json").write_text("{}")
    reports.until(("c", "channel.json"))
    (root / "new").mkdir()
    reports.until(("new", None))
    reports.quiet(0.3)
    # inside a sample folder: a file changed in place is not reported (its
    # fingerprint is read again when its quiet period is due, or at a rescan)
    (root / "c" / "s1" / "data.csv").write_text("x")
    reports.quiet(0.3)  # polling may report the folder whose listing changed
    with open(root / "c" / "s1" / "data.csv", "a") as f:
        f.write("more")
    (root / "c" / "s1" / "data.csv").read_text()  # as the watcher hashes it
    assert not {r for r in reports.quiet() if r[1] != "s1.ready"}


def test_a_folder_renamed_in_and_one_moved_out(watched, tmp_path):
    root, reports, _ = watched
    staged = root / "c" / ".staging" / "s2"
    (staged / "sub").mkdir(parents=True)
    reports.until(("c", ".staging"))
    os.rename(staged, root / "c" / "s2")
    reports.until(("c", "s2"))
    shutil.move(str(root / "c" / "s2"), str(tmp_path / "archived"))
    reports.until(("c", "s2"))
    reports.quiet(0.1)
    (tmp_path / "archived" / "more.csv").write_text("outside the root now")
    assert reports.quiet() == set()


def test_channels_are_watched_and_unwatched(watched):
    root, reports, observer = watched
    (root / "d").mkdir()
    reports.until(("d", None))
    assert ("d", "x") not in reports.quiet(0.2)
    observer.watch_channel("d")
    observer.watch_channel("d")  # twice is fine
    (root / "d" / "x").mkdir()
    reports.until(("d", "x"))
    observer.unwatch_channel("d")
    assert observer.channels == {"c"}
    (root / "d" / "y").mkdir()
    assert ("d", "y") not in reports.quiet()
    observer.watch_channel("gone")  # a channel deleted before it could be watched
    assert observer.channels == {"c"}


def test_a_deleted_channel_stops_its_watch_not_the_observer(watched):
    root, reports, observer = watched
    shutil.rmtree(root / "c")
    reports.until(("c", None))
    wait_for(lambda: not observer.alive(), 5, 0.05, "the channel's emitter to stop")
    assert not observer.ensure_alive()  # nothing to restart: the channel is gone
    assert observer.restarts == 0 and observer.channels == set() and observer.alive()
    (root / "c").mkdir()
    reports.until(("c", None))


def test_a_dead_observer_is_restarted_with_its_channels(watched):
    root, reports, observer = watched
    observer.observer.stop()
    wait_for(lambda: not observer.alive(), 5, 0.05, "the observer to stop")
    assert observer.ensure_alive() and observer.restarts == 1 and observer.alive()
    assert observer.channels == {"c"}
    (root / "c" / "after").mkdir()
    reports.until(("c", "after"))
    (root / "e").mkdir()
    reports.until(("e", None))


def test_polling_when_inotify_cannot_be_used(tmp_path, monkeypatch):
    class NoInotify(observer_module.PollingObserver):
        def schedule(self, *args, **kwargs):
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(observer_module, "Observer", NoInotify)
    reports = Reports()
    observer = FolderObserver(tmp_path, reports, poll_interval=0.1)
    observer.start()
    try:
        assert observer.polling and observer.alive()
        (tmp_path / "c").mkdir()
        reports.until(("c", None))
        observer.watch_channel("c")
        (tmp_path / "c" / "s").mkdir()
        reports.until(("c", "s"))
    finally:
        observer.stop()


# --- the watcher with a real observer, and no periodic rescan ------------------------------


@pytest.fixture
def live(tmp_path, redis_client):
    """A watcher running its loop on a real observer; rescans far apart."""
    root = tmp_path / "root"
    root.mkdir()
    fake = FakeSubmitter(root)
    settings = Settings(quiet_period=0.5, rescan_interval=600.0, batch_window=0.1, batch_size=50)
    watcher = Watcher(
        root,
        gateway=JobGateway(fake),
        state=WatchState(redis_client, root),
        settings=settings,
    )
    watcher.start()
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    yield root, watcher, fake
    watcher.stop()
    thread.join(10)


def submitted(fake: FakeSubmitter) -> set[str]:
    return {
        os.path.basename(p)
        for job in list(fake.jobs.values())
        for p in job.data.get("paths") or [job.data.get("path")]
        if p
    }


def test_folders_arriving_every_way_are_seen_without_rescans(live, tmp_path):
    root, watcher, fake = live
    # a channel created after the watcher started is watched
    channel = root / "c"
    staging = root / "c" / ".staging"
    staging.mkdir(parents=True)
    (channel / "channel.json").write_text(json.dumps({"dataset_key": "d" * 64}))
    wait_for(lambda: "c" in watcher.observer.channels, 5, 0.05, "the channel's watch")

    # written slowly: nothing reported once its folder exists, ready after the quiet period
    slow = channel / "slow"
    slow.mkdir()
    for i in range(4):
        (slow / f"part{i}.csv").write_text(f"slow {i}\n")
        time.sleep(0.2)
    # moved in (an atomic rename) and marked, or not
    for name in ("moved", "marked"):
        (staging / name).mkdir()
        (staging / name / "data.csv").write_text(f"{name}\n")
        os.rename(staging / name, channel / name)
    (channel / "marked.ready").write_text("")
    # copied in bulk
    source = tmp_path / "source"
    for i in range(60):
        (source / f"bulk{i}").mkdir(parents=True)
        (source / f"bulk{i}" / "data.csv").write_text(f"bulk {i}\n")
    for i in range(60):
        shutil.copytree(source / f"bulk{i}", channel / f"bulk{i}")

    expected = {"slow", "moved", "marked"} | {f"bulk{i}" for i in range(60)}
    wait_for(lambda: submitted(fake) >= expected, 20, 0.1, "every folder submitted")
    assert submitted(fake) == expected
    rec = watcher.state.folder("c/slow")
    assert rec.status == "queued"
    assert rec.fingerprint["files"] == 4  # taken once complete, not at its first file

    # a channel removed is no longer watched
    shutil.rmtree(channel)
    wait_for(lambda: "c" not in watcher.observer.channels, 5, 0.05, "the watch to go")
    assert watcher.observer.restarts == 0
