"""The inotify reader on a real folder: which channel and entry each change is reported as."""

from __future__ import annotations

import os
import queue
import shutil
import time

import pytest

from substra_worker.watcher import inotify
from substra_worker.watcher.inotify import InotifyReader

pytestmark = pytest.mark.skipif(not inotify.available(), reason="inotify is Linux only")


class Reports:
    """The (channel, entry) pairs a reader reports, in order."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, str | None]] = queue.Queue()

    def __call__(self, channel: str, entry: str | None) -> None:
        self.queue.put((channel, entry))

    def until(self, expected: tuple[str, str | None], timeout: float = 5.0) -> set:
        """Every report up to ``expected`` (fail if it does not come)."""
        seen = set()
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
        """What is reported in the next ``seconds`` (expected: nothing)."""
        time.sleep(seconds)
        seen = set()
        while not self.queue.empty():
            seen.add(self.queue.get())
        return seen


@pytest.fixture
def watched(tmp_path):
    root = tmp_path / "root"
    (root / "c" / ".staging").mkdir(parents=True)
    reports = Reports()
    reader = InotifyReader(str(root), reports)
    reader.start()
    yield root, reports, reader
    reader.stop()


def test_changes_are_reported_by_channel_and_entry(watched):
    root, reports, _ = watched
    (root / "new").mkdir()
    assert ("new", None) in reports.until(("new", None))
    (root / "c" / "s1").mkdir()
    reports.until(("c", "s1"))
    (root / "c" / "s1" / "deep").mkdir()
    reports.until(("c", "s1"))
    reports.quiet(0.1)  # the new sub-folder is watched by now
    (root / "c" / "s1" / "deep" / "data.csv").write_text("x")
    reports.until(("c", "s1"))
    (root / "c" / "s1.ready").write_text("")
    reports.until(("c", "s1.ready"))
    os.utime(root / "c" / "s1.ready")  # a marker touched again
    reports.until(("c", "s1.ready"))


def test_a_folder_renamed_in_is_followed_and_one_moved_out_is_not(watched, tmp_path):
    root, reports, _ = watched
    staged = root / "c" / ".staging" / "s2"
    (staged / "sub").mkdir(parents=True)
    reports.until(("c", ".staging"))
    os.rename(staged, root / "c" / "s2")
    reports.until(("c", "s2"))
    reports.quiet(0.1)
    (root / "c" / "s2" / "sub" / "late.csv").write_text("written after the rename")
    seen = reports.until(("c", "s2"))
    assert ("c", ".staging") not in seen | reports.quiet(0.1)  # not under its old place
    shutil.move(str(root / "c" / "s2"), str(tmp_path / "archived"))
    reports.until(("c", "s2"))
    reports.quiet(0.1)
    (tmp_path / "archived" / "more.csv").write_text("outside the root now")
    assert reports.quiet() == set()


def test_reading_files_is_not_a_change(watched):
    root, reports, _ = watched
    folder = root / "c" / "s3"
    folder.mkdir()
    (folder / "data.csv").write_text("content")
    reports.until(("c", "s3"))
    reports.quiet(0.1)
    assert (folder / "data.csv").read_text() == "content"  # as the watcher hashes it
    os.listdir(folder)
    assert reports.quiet() == set()


def test_stop_ends_the_reader(watched):
    _, _, reader = watched
    assert reader.is_alive()
    reader.stop()
    assert not reader.is_alive()
    reader.stop()  # twice is fine


def test_a_missing_root_cannot_be_watched(tmp_path):
    with pytest.raises(OSError):
        InotifyReader(str(tmp_path / "missing"), Reports())


def test_the_folder_observer_restarts_a_dead_reader(tmp_path):
    from substra_worker.watcher.observer import FolderObserver

    reports = Reports()
    observer = FolderObserver(tmp_path, reports)
    observer.start()
    try:
        assert isinstance(observer.observer, InotifyReader) and not observer.polling
        observer.observer.stop()  # the reader dies
        assert not observer.alive()
        assert observer.ensure_alive() and observer.restarts == 1
        (tmp_path / "c").mkdir()
        reports.until(("c", None))
    finally:
        observer.stop()


def test_the_folder_observer_polls_when_inotify_fails(tmp_path, monkeypatch):
    from substra_worker.watcher import observer as observer_module

    def no_watch(*args):
        raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(observer_module, "InotifyReader", no_watch)
    reports = Reports()
    observer = observer_module.FolderObserver(tmp_path, reports, poll_interval=0.1)
    observer.start()
    try:
        assert observer.polling and observer.alive()
        (tmp_path / "c").mkdir()
        reports.until(("c", None))
    finally:
        observer.stop()
