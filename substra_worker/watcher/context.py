"""What the parts of the watcher share: settings, collaborators and the picture of the root.

One thread does all the work, so nothing here needs a lock. The parts (the
scanner, the folder decisions, the sender, the job tracker, the channel
datasets and the archiver) each hold this context and reach one another
through it; ``service.Watcher`` builds them and wires them together.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from substra_worker.settings import Settings
from substra_worker.watcher import readiness as rd
from substra_worker.watcher.batching import Batcher
from substra_worker.watcher.channel import Channel
from substra_worker.watcher.state import ChannelRecord, FolderRecord, FolderStatus, WatchState
from substra_worker.watcher.submit import JobGateway

if TYPE_CHECKING:
    from substra_worker.watcher.archive import Archiver
    from substra_worker.watcher.datasets import ChannelDatasets
    from substra_worker.watcher.folders import Folders
    from substra_worker.watcher.observer import FolderObserver
    from substra_worker.watcher.scan import Scanner
    from substra_worker.watcher.sending import Sender
    from substra_worker.watcher.tracking import JobTracker

# one logger for every part of the watcher: its lines keep the name they always had
log = logging.getLogger("substra_worker.watcher.service")

FAILED_RETRY_MAX = 3600.0  # seconds: cap of the delay before a failed folder is tried again
S = FolderStatus
FINAL_VALUES = frozenset({S.REGISTERED.value, S.DUPLICATE.value})
_LOG_LEVELS = {
    S.REGISTERED: logging.INFO,
    S.DUPLICATE: logging.INFO,
    S.REJECTED: logging.WARNING,
    S.STALLED: logging.WARNING,
    S.VANISHED: logging.WARNING,
    S.FAILED: logging.WARNING,
}  # other changes (waiting, submitting, queued) are logged at DEBUG
IGNORED_NAMES = {"__pycache__", "lost+found"}


def ignored(name: str) -> bool:
    """Names the watcher never looks at: hidden ones (a place to build a folder before
    renaming it into view) and a few that tools create on their own."""
    return name.startswith(".") or name in IGNORED_NAMES


@dataclass
class Tracked:
    """A job the watcher waits for, and what it means."""

    kind: str  # "batch", "single" (a split batch's folder, via its link job), "dataset"
    folders: list[str] = field(default_factory=list)
    channel: str | None = None


class WatchContext:
    """The watcher's settings, collaborators and in-memory state, shared by its parts."""

    scanner: Scanner
    folders: Folders
    sender: Sender
    jobs: JobTracker
    datasets: ChannelDatasets
    archiver: Archiver

    def __init__(
        self,
        root: Path,
        *,
        gateway: JobGateway,
        state: WatchState,
        settings: Settings,
        archive_to: Path | None,
        clock: Callable[[], float],
        wallclock: Callable[[], float],
    ):
        self.root = root
        self.root_real = os.path.realpath(root)  # resolved once: see readiness.walk
        self.gateway = gateway
        self.state = state
        self.settings = settings
        self.archive_to = archive_to
        self.clock = clock
        self.wallclock = wallclock
        self.marker = settings.marker_name
        self.readiness = rd.Readiness(settings.quiet_period, settings.max_settle_wait)
        self.batcher = Batcher(settings.batch_window)
        self.records: dict[str, FolderRecord] = {}
        self.channel_records: dict[str, ChannelRecord] = {}
        self.channels: dict[str, Channel | None] = {}  # None: present but unusable
        self.tracked: dict[str, Tracked] = {}
        self.pending: dict[tuple[str, str], str] = {}  # (dataset, hash) -> folder in a batch
        self.pending_of: dict[str, tuple[str, str]] = {}  # folder -> its (dataset, hash)
        self.next_failed_retry: dict[str, float] = {}  # folder -> when to try it again
        self.dirty: set[str] = set()  # folders whose record changed since the last save
        self.observer: FolderObserver | None = None  # None: the caller decides when to look

    # --- watches -----------------------------------------------------------------------

    def watch_channel(self, name: str) -> None:
        """Have the entries of a channel folder watched (before it is listed)."""
        if self.observer is not None:
            self.observer.watch_channel(name)

    def unwatch_channels(self, names: set[str]) -> None:
        """Stop watching channels that are gone, or no longer folders."""
        if self.observer is not None:
            for name in names:
                self.observer.unwatch_channel(name)

    # --- records ---------------------------------------------------------------------

    def record(self, chan: str, name: str) -> FolderRecord:
        """The record of ``chan/name``, created (and to be saved) on first sight."""
        key = f"{chan}/{name}"
        rec = self.records.get(key)
        if rec is None:
            now = self.wallclock()
            rec = FolderRecord(
                key=key,
                channel=chan,
                name=name,
                path=str(self.root / chan / name),
                first_seen=now,
                updated_at=now,
            )
            self.records[key] = rec
            self.dirty.add(key)
        return rec

    def set(self, rec: FolderRecord, status: FolderStatus, reason: str | None = None) -> None:
        """Move a folder to ``status`` (saved with the next ``save``), logged when it matters."""
        if rec.set(status, reason, now=self.wallclock()):
            self.dirty.add(rec.key)
            level = _LOG_LEVELS.get(status, logging.DEBUG)
            if log.isEnabledFor(level):
                suffix = f": {reason}" if reason else ""
                log.log(level, "%s: %s%s", rd.display_name(rec.key), status.value, suffix)

    def save(self) -> None:
        """Write the records that changed, in one round trip."""
        if not self.dirty:
            return
        keys, self.dirty = self.dirty, set()
        self.state.save_folders(self.records[k] for k in keys if k in self.records)

    def forget(self, key: str) -> None:
        """Drop a folder's record, here and in the state."""
        self.records.pop(key, None)
        self.dirty.discard(key)
        self.state.delete_folder(key)

    # --- jobs and batches --------------------------------------------------------------

    def track(self, job_id: str, kind: str, *folders: str) -> None:
        """Wait for ``job_id``; its outcome decides the fate of ``folders``."""
        tracked = self.tracked.setdefault(job_id, Tracked(kind))
        for key in folders:
            if key not in tracked.folders:
                tracked.folders.append(key)

    def drop_pending(self, key: str) -> None:
        """The folder no longer holds its content's place in a batch."""
        pair = self.pending_of.pop(key, None)
        if pair is not None and self.pending.get(pair) == key:
            del self.pending[pair]

    def retry_delay(self, attempt: int) -> float:
        """Backoff before a failed folder (or dataset) is tried again, after ``attempt`` tries."""
        return min(FAILED_RETRY_MAX, self.settings.rescan_interval * 2 ** min(attempt, 10))
