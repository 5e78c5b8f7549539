"""The watcher: folders dropped into channels become data-sample jobs, once each.

One thread does all the work (``step()``), so the state needs no locks: the
observer thread only notes which channel or entry changed. Nothing inside a
sample folder is watched: a folder still settling is looked at again when its
quiet period may be over (``Scanner.look_at_due``), whether or not anything
was reported. Each step rescans
the root when due (reconciliation at start, then every ``rescan_interval``),
looks at the folders that changed or whose quiet period may be over, sends
the batches that are due, and reads back the jobs it is waiting for.

``Watcher`` is the facade; the work is done by its parts, which share a
``context.WatchContext``: ``scan`` (where to look), ``folders`` (what becomes
of one folder), ``sending`` (batches into jobs, and the once-only claims),
``tracking`` (what a finished job means), ``datasets`` (channels and the
datasets they register) and ``archive`` (``--archive-to``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from substra_worker.settings import Settings
from substra_worker.watcher.archive import Archiver, check_archive_dir
from substra_worker.watcher.batching import Batcher
from substra_worker.watcher.channel import Channel
from substra_worker.watcher.context import S, Tracked, WatchContext
from substra_worker.watcher.datasets import ChannelDatasets
from substra_worker.watcher.folders import Folders
from substra_worker.watcher.observer import FolderObserver
from substra_worker.watcher.readiness import Readiness
from substra_worker.watcher.scan import Scanner
from substra_worker.watcher.sending import Sender
from substra_worker.watcher.state import ChannelRecord, FolderRecord, WatchState
from substra_worker.watcher.submit import JobGateway
from substra_worker.watcher.tracking import JobTracker

log = logging.getLogger(__name__)

JOB_POLL_INTERVAL = 0.5  # seconds between two reads of the jobs the watcher waits for
MAX_TICK = 0.5  # seconds: longest sleep of the loop when nothing is due
COALESCE = 0.05  # seconds: after an event, wait this long for its siblings before a step


class _Shared:
    """An attribute of the watcher that lives in its context, where every part reads it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, watcher: Watcher | None, owner: type | None = None):
        return self if watcher is None else getattr(watcher.ctx, self.name)

    def __set__(self, watcher: Watcher, value: object) -> None:
        setattr(watcher.ctx, self.name, value)


class Watcher:
    """Watch ``root``: every folder inside a channel becomes one data sample on the node."""

    # what the watcher knows and works with (read by the CLI and tests)
    root: Path = _Shared()
    archive_to: Path | None = _Shared()
    gateway: JobGateway = _Shared()
    state: WatchState = _Shared()
    settings: Settings = _Shared()
    marker: str = _Shared()
    clock: Callable[[], float] = _Shared()
    wallclock: Callable[[], float] = _Shared()
    records: dict[str, FolderRecord] = _Shared()
    channels: dict[str, Channel | None] = _Shared()
    channel_records: dict[str, ChannelRecord] = _Shared()
    tracked: dict[str, Tracked] = _Shared()
    readiness: Readiness = _Shared()
    batcher: Batcher = _Shared()

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        gateway: JobGateway,
        state: WatchState,
        settings: Settings,
        archive_to: str | os.PathLike[str] | None = None,
        polling: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ):
        root_path = Path(os.path.abspath(root))
        archive_path = Path(os.path.abspath(archive_to)) if archive_to else None
        if archive_path is not None:
            check_archive_dir(root_path, archive_path)
        self.ctx = ctx = WatchContext(
            root_path,
            gateway=gateway,
            state=state,
            settings=settings,
            archive_to=archive_path,
            clock=clock,
            wallclock=wallclock,
        )
        ctx.scanner = Scanner(ctx)
        ctx.folders = Folders(ctx)
        ctx.sender = Sender(ctx)
        ctx.jobs = JobTracker(ctx)
        ctx.datasets = ChannelDatasets(ctx)
        ctx.archiver = Archiver(ctx)
        self.polling = settings.polling if polling is None else polling
        self._events_lock = threading.Lock()
        self._event_channels: set[str] = set()
        self._event_entries: set[tuple[str, str]] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._next_rescan = 0.0
        self._next_job_poll = 0.0
        self.observer: FolderObserver | None = None
        self.started = False

    # --- life cycle -------------------------------------------------------------------

    def start(self, *, observe: bool = True) -> None:
        """Load the recorded state, reconcile with the folders on disk, start observing."""
        ctx = self.ctx
        self.root.mkdir(parents=True, exist_ok=True)
        ctx.root_real = os.path.realpath(self.root)  # it exists now
        if self.archive_to is not None:
            self.archive_to.mkdir(parents=True, exist_ok=True)
        self.state.register_root()
        ctx.records = {r.key: r for r in self.state.folders()}
        ctx.channel_records = {c.name: c for c in self.state.channels()}
        for rec in ctx.records.values():
            if rec.status == S.QUEUED.value and rec.job_id:
                ctx.track(rec.job_id, "batch", rec.key)
        for crec in ctx.channel_records.values():
            if crec.dataset_job_id and not crec.dataset_registered:
                ctx.tracked.setdefault(crec.dataset_job_id, Tracked("dataset", channel=crec.name))
        if observe:
            self.observer = FolderObserver(
                self.root,
                self._on_event,
                polling=self.polling,
                poll_interval=max(0.1, min(1.0, self.settings.quiet_period)),
            )
            self.observer.start()
            ctx.observer = self.observer  # the scans add and remove the channels' watches
        self.rescan()
        self._resubmit_interrupted()
        ctx.save()
        self._next_rescan = self.clock() + self.settings.rescan_interval
        self.started = True

    def run(self, stop: threading.Event | None = None) -> None:
        """Run until ``stop`` (or ``self.stop()``) is set."""
        stop = stop or self._stop
        if not self.started:
            self.start()
        while not stop.is_set() and not self._stop.is_set():
            self._wake.clear()  # events from now on wake the next wait
            try:
                self.step()
            except Exception:  # noqa: BLE001 - the watcher must keep running
                log.exception("watcher step failed; going on")
                self._stop.wait(1.0)
            if self._wake.wait(self._sleep_time()) and not self._stop.is_set():
                time.sleep(COALESCE)  # a burst of events: take it in one step
        self.close()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def close(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer = self.ctx.observer = None
        self.ctx.save()

    # --- events ------------------------------------------------------------------------

    def _on_event(self, channel: str, entry: str | None) -> None:
        """Called from the observer thread: note where to look, wake the loop."""
        with self._events_lock:
            if entry is None:
                self._event_channels.add(channel)
            else:
                self._event_entries.add((channel, entry))
        self._wake.set()

    def _drain_events(self) -> tuple[set[str], set[tuple[str, str]]]:
        with self._events_lock:
            channels, entries = self._event_channels, self._event_entries
            self._event_channels, self._event_entries = set(), set()
        return channels, entries

    # --- the loop ----------------------------------------------------------------------

    def step(self) -> None:
        """One pass: events, due rescans, settling folders, batches, jobs."""
        ctx = self.ctx
        now = self.clock()
        if self.observer is not None and self.observer.ensure_alive():
            self._next_rescan = now  # events were lost while it was down
        if now >= self._next_rescan:
            self.rescan()
            self._resubmit_interrupted()
            self._next_rescan = now + self.settings.rescan_interval
        ctx.scanner.look_at_events(*self._drain_events())
        ctx.scanner.look_at_due()
        ctx.folders.decide()
        ctx.sender.flush(self.clock())
        if self.clock() >= self._next_job_poll:
            ctx.jobs.poll()
            ctx.folders.decide()  # folders looked at again after a failure
            self._next_job_poll = self.clock() + JOB_POLL_INTERVAL
        ctx.save()

    def rescan(self) -> None:
        """Look at every channel and folder (reconciliation, and a net for lost events)."""
        self.ctx.scanner.rescan()
        self.ctx.folders.decide()

    def _resubmit_interrupted(self) -> None:
        self.ctx.sender.resubmit_interrupted()
        self.ctx.folders.decide()  # folders of a refused batch, looked at again

    def _sleep_time(self) -> float:
        now = self.clock()
        times = [self._next_rescan, self._next_job_poll if self.tracked else now + MAX_TICK]
        for key in self.readiness.folders():
            due = self.readiness.next_due(key)
            if due is not None:
                times.append(due)
        due = self.batcher.next_due()
        if due is not None:
            times.append(due)
        return max(0.01, min(MAX_TICK, min(times) - now))

    def idle(self) -> bool:
        """Nothing settling, batched or waiting for a job."""
        return (
            not len(self.readiness)
            and not len(self.batcher)
            and not self.tracked
            and not self.ctx.folders.pending()
        )
