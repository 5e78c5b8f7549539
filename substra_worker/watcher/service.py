"""The watcher: folders dropped into channels become data-sample jobs, once each.

One thread does all the work (``step()``), so the state needs no locks: the
observer thread only notes which channel or entry changed. Each step rescans
the root when due (reconciliation at start, then every ``rescan_interval``),
looks at the folders that changed or whose quiet period may be over, sends
the batches that are due, and reads back the jobs it is waiting for.

Once and only once: a folder's content hash is the data-sample key the node
will compute. Before a batch is submitted, its folders and their claims in the
per-dataset index are written as ``submitting`` with the batch's idempotency
key, so a watcher killed at any point resubmits the same key (and gets the same
job) or finds the claim and does nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from redis.exceptions import RedisError

from substra_worker.settings import Settings
from substra_worker.watcher import readiness as rd
from substra_worker.watcher.batching import Batcher, ReadyFolder
from substra_worker.watcher.channel import (
    CONFIG_NAME,
    Channel,
    ChannelError,
    config_stamp,
    load_channel,
)
from substra_worker.watcher.observer import FolderObserver
from substra_worker.watcher.state import (
    FINAL,
    ChannelRecord,
    FolderRecord,
    FolderStatus,
    WatchState,
)
from substra_worker.watcher.submit import (
    JobGateway,
    SubmitRefused,
    batch_key,
    dataset_idempotency_key,
    sample_key_for,
)

log = logging.getLogger(__name__)

JOB_POLL_INTERVAL = 0.5  # seconds between two reads of the jobs the watcher waits for
MAX_TICK = 0.5  # seconds: longest sleep of the loop when nothing is due
FAILED_RETRY_MAX = 3600.0  # seconds: cap of the delay before a failed folder is tried again

S = FolderStatus
_LOG_LEVELS = {
    S.REGISTERED: logging.INFO,
    S.DUPLICATE: logging.INFO,
    S.REJECTED: logging.WARNING,
    S.STALLED: logging.WARNING,
    S.VANISHED: logging.WARNING,
    S.FAILED: logging.WARNING,
}  # other changes (waiting, submitting, queued) are logged at DEBUG
COALESCE = 0.05  # seconds: after an event, wait this long for its siblings before a step
IGNORED_NAMES = {"__pycache__", "lost+found"}


def ignored(name: str) -> bool:
    """Names the watcher never looks at: hidden ones (a place to build a folder before
    renaming it into view) and a few that tools create on their own."""
    return name.startswith(".") or name in IGNORED_NAMES


@dataclass
class _Tracked:
    """A job the watcher waits for, and what it means."""

    kind: str  # "batch", "single" (a split batch's folder, via its link job), "dataset"
    folders: list[str] = field(default_factory=list)
    channel: str | None = None


class Watcher:
    """Watch ``root``: every folder inside a channel becomes one data sample on the node."""

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
        self.root = Path(os.path.abspath(root))
        self.gateway = gateway
        self.state = state
        self.settings = settings
        self.archive_to = Path(os.path.abspath(archive_to)) if archive_to else None
        if self.archive_to is not None:
            rel = os.path.relpath(self.archive_to, self.root)
            if rel == "." or (not rel.startswith("..") and not ignored(rel.split(os.sep)[0])):
                raise ValueError(
                    "the archive folder must be outside the watch root (or hidden in it, "
                    f"like {self.root / '.archive'}): archived folders would be watched again"
                )
        self.polling = settings.polling if polling is None else polling
        self.clock = clock
        self.wallclock = wallclock
        self.marker = settings.marker_name
        self.readiness = rd.Readiness(settings.quiet_period, settings.max_settle_wait)
        self.batcher = Batcher(settings.batch_window)
        self.records: dict[str, FolderRecord] = {}
        self.channel_records: dict[str, ChannelRecord] = {}
        self.channels: dict[str, Channel | None] = {}  # None: present but unusable
        self.tracked: dict[str, _Tracked] = {}
        self._pending: dict[tuple[str, str], str] = {}  # (dataset, hash) -> folder in a batch
        self._pending_of: dict[str, tuple[str, str]] = {}  # folder -> its (dataset, hash)
        self._dataset_retry_at: dict[str, float] = {}  # channel -> when to submit its dataset again
        self._dirty_records: set[str] = set()
        self._events_lock = threading.Lock()
        self._event_channels: set[str] = set()
        self._event_entries: set[tuple[str, str]] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._next_rescan = 0.0
        self._next_job_poll = 0.0
        self._next_failed_retry: dict[str, float] = {}
        self.observer: FolderObserver | None = None
        self.started = False

    # --- life cycle -------------------------------------------------------------------

    def start(self, *, observe: bool = True) -> None:
        """Load the recorded state, reconcile with the folders on disk, start observing."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.archive_to is not None:
            self.archive_to.mkdir(parents=True, exist_ok=True)
        self.state.register_root()
        self.records = {r.key: r for r in self.state.folders()}
        self.channel_records = {c.name: c for c in self.state.channels()}
        for rec in self.records.values():
            if rec.status == S.QUEUED.value and rec.job_id:
                self._track(rec.job_id, "batch", rec.key)
        for crec in self.channel_records.values():
            if crec.dataset_job_id and not crec.dataset_registered:
                self.tracked.setdefault(crec.dataset_job_id, _Tracked("dataset", channel=crec.name))
        if observe:
            self.observer = FolderObserver(
                self.root,
                self._on_event,
                polling=self.polling,
                poll_interval=max(0.1, min(1.0, self.settings.quiet_period)),
            )
            self.observer.start()
        self.rescan()
        self._resubmit_interrupted()
        self._save()
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
            self.observer = None
        self._save()

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
        now = self.clock()
        if self.observer is not None and self.observer.ensure_alive():
            self._next_rescan = now  # events were lost while it was down
        if now >= self._next_rescan:
            self.rescan()
            self._resubmit_interrupted()
            self._next_rescan = now + self.settings.rescan_interval
        channels, entries = self._drain_events()
        for name in channels:
            self._scan_channel(name)
        for chan, entry in entries:
            if chan in channels:
                continue  # the channel scan looked at everything
            if entry == CONFIG_NAME or self._is_reserved(chan, entry):
                self._scan_channel(chan)
                continue
            if chan not in self.channels:
                self._scan_channel(chan)  # a new channel: its folders come with it
                continue
            self._evaluate(chan, self._folder_of(chan, entry))
        for key in self.readiness.folders():
            due = self.readiness.next_due(key)
            if due is not None and due <= self.clock():
                chan, _, name = key.partition("/")
                self._evaluate(chan, name)
                again = self.readiness.next_due(key)
                if again is not None and again <= self.clock():
                    self.readiness.forget(key)  # not looked at (channel unusable...): rescans will
        self._flush(self.clock())
        if self.clock() >= self._next_job_poll:
            self._poll_jobs()
            self._next_job_poll = self.clock() + JOB_POLL_INTERVAL
        self._save()

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
        return not len(self.readiness) and not len(self.batcher) and not self.tracked

    # --- scanning ----------------------------------------------------------------------

    def rescan(self) -> None:
        """Look at every channel and folder (reconciliation, and a net for lost events)."""
        try:
            names = sorted(os.listdir(self.root))
        except OSError as e:
            log.error("cannot list the watch root %s: %s", self.root, e)
            return
        present = set()
        for name in names:
            if ignored(name):
                continue
            present.add(name)
            self._scan_channel(name)
        for name in list(self.channels):
            if name not in present:
                self._scan_channel(name)
        for key, rec in list(self.records.items()):
            if rec.channel not in present and not rec.archived_to:
                self._gone(key)
        self._prune()

    def _prune(self) -> None:
        """Forget records of folders long gone (kept as long as finished jobs are)."""
        horizon = self.wallclock() - self.settings.result_ttl
        for key, rec in list(self.records.items()):
            if (
                rec.updated_at < horizon
                and rec.status not in (S.SUBMITTING.value, S.QUEUED.value)
                and not os.path.lexists(rec.path)
            ):
                del self.records[key]
                self._dirty_records.discard(key)
                self.state.delete_folder(key)

    def _scan_channel(self, name: str) -> None:
        if ignored(name):
            return
        path = self.root / name
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self.channels.pop(name, None)
            if name in self.channel_records:
                self.channel_records.pop(name)
                self.state.delete_channel(name)
            for key in [k for k, r in self.records.items() if r.channel == name]:
                self._gone(key)
            return
        except OSError as e:
            self._channel_problem(name, f"cannot read the channel: {e.strerror}")
            return
        if not stat.S_ISDIR(st.st_mode):
            # files at the root are not channels: the place for a README or a script
            self.channels.pop(name, None)
            return
        problem = rd.name_problem(name)
        if problem:
            self._channel_problem(name, "channel " + problem)
            return
        channel = self.channels.get(name)
        if channel is None or channel.config_stamp != config_stamp(path):
            channel = self._load_channel(name)
        if channel is None:
            return
        if channel.registers_dataset:
            self._ensure_dataset(channel)
        try:
            entries = sorted(os.listdir(path))
        except OSError as e:
            self._channel_problem(name, f"cannot list the channel: {e.strerror}")
            return
        seen = set()
        for entry in entries:
            if ignored(entry) or entry in channel.reserved:
                continue
            target = self._folder_of(name, entry)
            seen.add(target)
            self._evaluate(name, target)
        for key, rec in list(self.records.items()):
            if rec.channel == name and rec.name not in seen and not rec.archived_to:
                self._gone(key)

    def _load_channel(self, name: str) -> Channel | None:
        crec = self.channel_records.get(name) or ChannelRecord(name)
        self.channel_records[name] = crec
        try:
            channel = load_channel(self.root / name, default_batch_size=self.settings.batch_size)
        except ChannelError as e:
            self.channels[name] = None
            self._channel_problem(name, e.reason)
            return None
        self.channels[name] = channel
        changed = not crec.ok or crec.dataset_keys != list(channel.dataset_keys)
        crec.ok, crec.reason = True, None
        if crec.dataset_keys != list(channel.dataset_keys):
            crec.dataset_keys = list(channel.dataset_keys)
            crec.dataset_job_id, crec.dataset_attempt = None, 0
            crec.dataset_registered = not channel.registers_dataset
            self._dataset_retry_at.pop(name, None)
        if changed:
            self.state.save_channel(crec)
        return channel

    def _ensure_dataset(self, channel: Channel) -> None:
        """Submit the dataset a channel describes, unless registered, on its way, or just failed."""
        crec = self.channel_records[channel.name]
        if crec.dataset_registered or crec.dataset_job_id in self.tracked:
            return
        if self.clock() < self._dataset_retry_at.get(channel.name, 0.0):
            return
        self._submit_dataset(channel, crec)

    def _channel_problem(self, name: str, reason: str) -> None:
        self.channels[name] = None
        crec = self.channel_records.get(name) or ChannelRecord(name)
        if crec.ok or crec.reason != reason or name not in self.channel_records:
            crec.ok, crec.reason = False, reason
            self.channel_records[name] = crec
            self.state.save_channel(crec)
            log.warning("channel %s: %s", rd.display_name(name), reason)

    def _is_reserved(self, chan: str, entry: str) -> bool:
        channel = self.channels.get(chan)
        return channel is not None and entry in channel.reserved

    def _folder_of(self, chan: str, entry: str) -> str:
        """The folder an entry stands for: itself, or the folder a marker file marks."""
        if self.marker and entry.endswith(self.marker) and len(entry) > len(self.marker):
            base = entry[: -len(self.marker)]
            if not (self.root / chan / entry).is_dir():
                return base
        return entry

    # --- one folder ----------------------------------------------------------------------

    def _record(self, chan: str, name: str) -> FolderRecord:
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
            self._dirty_records.add(key)
        return rec

    def _set(self, rec: FolderRecord, status: FolderStatus, reason: str | None = None) -> None:
        if rec.set(status, reason, now=self.wallclock()):
            self._dirty_records.add(rec.key)
            level = _LOG_LEVELS.get(status, logging.DEBUG)
            if log.isEnabledFor(level):
                suffix = f": {reason}" if reason else ""
                log.log(level, "%s: %s%s", rd.display_name(rec.key), status.value, suffix)

    def _evaluate(self, chan: str, name: str) -> None:
        """Look at one entry of a channel; an unexpected error is that folder's problem only."""
        try:
            self._look_at(chan, name)
        except RedisError:
            raise  # not the folder's fault: the step fails and is tried again
        except Exception as e:  # noqa: BLE001 - one odd folder must not stop the others
            log.exception("unexpected error on %s", rd.display_name(f"{chan}/{name}"))
            self._reject(self._record(chan, name), f"unexpected error: {type(e).__name__}: {e}")

    def _look_at(self, chan: str, name: str) -> None:
        channel = self.channels.get(chan)
        if channel is None:
            return  # the channel's own record says why
        if ignored(name) or name in channel.reserved:
            return
        key = f"{chan}/{name}"
        path = self.root / chan / name
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                self._reject(self._record(chan, name), "symlink is broken")
            else:
                self._gone(key)
            return
        except OSError as e:
            self._reject(self._record(chan, name), f"cannot read it: {e.strerror}")
            return
        if not stat.S_ISDIR(st.st_mode):
            self._stray_file(chan, name)
            return
        rec = self._record(chan, name)
        if rec.kind != "folder":
            rec.kind = "folder"
            self._dirty_records.add(key)
        if rec.status in (S.SUBMITTING.value, S.QUEUED.value):
            return  # its job decides; a change is seen when it finishes
        if rec.archived_to:
            # the same name dropped again after its folder was archived: a new arrival
            rec.archived_to = None
            self._dirty_records.add(key)
        problem = rd.name_problem(name)
        if problem:
            self._reject(rec, problem)
            return
        now = self.clock()
        try:
            files = rd.walk(path, self.root)
        except rd.FolderGone:
            self._gone(key)
            return
        except rd.FolderChanging:
            self.readiness.observe(key, None, now)
            return
        except rd.BadFolder as e:
            self._reject(rec, e.reason)
            return
        fp = rd.fingerprint(files)
        if (
            rec.status in {s.value for s in FINAL}
            and rd.Fingerprint.from_dict(rec.fingerprint) == fp
        ):
            self.readiness.forget(key)
            self._maybe_archive(rec)
            return
        if (
            rec.status == S.FAILED.value
            and rd.Fingerprint.from_dict(rec.fingerprint) == fp
            and self.clock() < self._next_failed_retry.get(key, 0.0)
        ):
            return  # retried later, or at once when it changes
        if rec.status == S.REJECTED.value and rd.Fingerprint.from_dict(rec.fingerprint) == fp:
            return  # nothing changed since it was refused
        if self.batcher.holds(key):
            if rd.Fingerprint.from_dict(rec.fingerprint) == fp:
                return
            self._unbatch(rec)
        has_marker = rd.marker_is_fresh(path, self.marker, files)
        verdict = self.readiness.observe(key, fp, now, marker=has_marker)
        if verdict is rd.Verdict.WAITING:
            if rec.status not in (S.STALLED.value, *(s.value for s in FINAL)):
                self._set(rec, S.WAITING, "waiting for the folder to settle")
            return
        if verdict is rd.Verdict.STALLED:
            waited = now - (self.readiness.waiting_since(key) or now)
            self._set(
                rec,
                S.STALLED,
                f"still changing after {waited:.0f}s (max_settle_wait "
                f"{self.settings.max_settle_wait:g}s); looked at again until it settles",
            )
            return
        # ready
        self.readiness.forget(key)
        if fp.files == 0:
            self._reject(rec, "empty folder: no file to register", fp)
            return
        try:
            content_hash = rd.sample_key(files)
            if rd.folder_fingerprint(path, self.root) != fp:
                raise rd.FolderChanging("changed while it was hashed")
        except rd.FolderChanging:
            self.readiness.observe(key, None, now)
            return
        except rd.FolderGone:
            self._gone(key)
            return
        except rd.BadFolder as e:
            self._reject(rec, e.reason, fp)
            return
        self._ready(rec, channel, fp, content_hash)

    def _reject(self, rec: FolderRecord, reason: str, fp: rd.Fingerprint | None = None) -> None:
        """Refuse a folder for ``reason``; with ``fp``, only a change makes it looked at again."""
        if fp is not None:
            rec.fingerprint = fp.as_dict()
            self._dirty_records.add(rec.key)
        self.readiness.forget(rec.key)
        if self.batcher.holds(rec.key):
            self._unbatch(rec)
        self._set(rec, S.REJECTED, reason)

    def _stray_file(self, chan: str, name: str) -> None:
        rec = self._record(chan, name)
        if rec.kind != "file":
            rec.kind = "file"
            self._dirty_records.add(rec.key)
        self.readiness.forget(rec.key)
        self._set(
            rec,
            S.REJECTED,
            "stray file at channel level: a channel holds only sample folders, "
            f"{CONFIG_NAME}, the dataset files it names and '<folder>{self.marker}' markers",
        )

    def _gone(self, key: str) -> None:
        rec = self.records.get(key)
        self.readiness.forget(key)
        if rec is None:
            return
        if self.batcher.holds(key):
            self._unbatch(rec)
        if rec.kind == "file":
            self.records.pop(key)
            self._dirty_records.discard(key)
            self.state.delete_folder(key)
            return
        if rec.status in (S.WAITING.value, S.STALLED.value, S.REJECTED.value):
            self._set(rec, S.VANISHED, "deleted or moved away before it was registered")

    def _unbatch(self, rec: FolderRecord) -> None:
        self.batcher.discard(rec.key)
        self._drop_pending(rec.key)

    def _ready(
        self, rec: FolderRecord, channel: Channel, fp: rd.Fingerprint, content_hash: str
    ) -> None:
        dataset = channel.dataset_key
        now_wall = self.wallclock()
        same = rec.content_hash == content_hash
        if same and rec.status in {s.value for s in FINAL}:
            rec.fingerprint = fp.as_dict()  # touched, same content
            self._dirty_records.add(rec.key)
            self._maybe_archive(rec)
            return
        changed_note = None
        if not same and rec.status in {s.value for s in FINAL} and rec.content_hash:
            rec.previous.append(
                {
                    "sample_key": rec.sample_key,
                    "content_hash": rec.content_hash,
                    "job_id": rec.job_id,
                    "registered_at": rec.registered_at,
                    "changed_at": now_wall,
                }
            )
            changed_note = (
                f"changed after registration (was sample {rec.content_hash}): "
                "its new content becomes a new sample"
            )
        holder = self._pending.get((dataset, content_hash))
        claim = self.state.claim(dataset, content_hash)
        if holder is None and claim is not None:
            mine = claim.get("root") == self.state.root_id and claim.get("folder") == rec.key
            if claim.get("status") in ("submitting", "queued", "registered") and not mine:
                holder = claim.get("folder")
                if claim.get("root") != self.state.root_id:
                    holder = f"{holder} (another watch root)"
            elif mine and claim.get("status") == "registered":
                rec.fingerprint, rec.content_hash = fp.as_dict(), content_hash
                rec.sample_key, rec.job_id = content_hash, claim.get("job_id")
                rec.dataset_keys = list(channel.dataset_keys)
                self._set(rec, S.REGISTERED, changed_note)
                self._maybe_archive(rec)
                return
        if holder is not None and holder != rec.key:
            rec.fingerprint, rec.content_hash = fp.as_dict(), content_hash
            rec.duplicate_of = holder
            rec.sample_key = content_hash
            rec.dataset_keys = list(channel.dataset_keys)
            note = f"same content as {holder} (sample {content_hash}): nothing new to register"
            self._set(rec, S.DUPLICATE, f"{changed_note}; {note}" if changed_note else note)
            self._maybe_archive(rec)
            return
        attempt = 1
        if claim is not None:
            attempt = int(claim.get("attempt") or 0) + 1
        rec.attempt = attempt
        rec.fingerprint, rec.content_hash = fp.as_dict(), content_hash
        rec.duplicate_of = None
        rec.sample_key = None
        rec.ready_at = now_wall
        rec.dataset_keys = list(channel.dataset_keys)
        self._drop_pending(rec.key)
        self._pending[(dataset, content_hash)] = rec.key
        self._pending_of[rec.key] = (dataset, content_hash)
        self.batcher.add(
            channel.name,
            channel.batch_size,
            ReadyFolder(rec.key, rec.path, content_hash),
            self.clock(),
        )
        self._set(rec, S.WAITING, changed_note or "ready: waiting for its batch")

    # --- submitting ----------------------------------------------------------------------

    def _dataset_refs(self, channel: Channel) -> list[str] | None:
        """The data_manager_keys of the channel's samples, or None while they cannot be sent."""
        if not channel.registers_dataset:
            return list(channel.dataset_keys)
        crec = self.channel_records.get(channel.name)
        if crec is None:
            return None
        if crec.dataset_registered:
            return list(channel.dataset_keys)
        if crec.dataset_job_id is not None and crec.dataset_job_id in self.tracked:
            return [self.gateway.ref(crec.dataset_job_id)]  # on its way: refer to its job
        return None

    def _flush(self, now: float, *, force: bool = False) -> None:
        for chan, items in self.batcher.due(now, force=force):
            channel = self.channels.get(chan)
            if channel is None:
                for item in items:
                    self._drop_pending(item.key)
                    rec = self.records.get(item.key)
                    if rec is not None:
                        self._set(rec, S.WAITING, "channel became unusable; waiting for it")
                continue
            refs = self._dataset_refs(channel)
            if refs is None:
                for item in items:  # hold them until the dataset is registered
                    self.batcher.add(chan, channel.batch_size, item, now)
                    rec = self.records.get(item.key)
                    if rec is not None:
                        self._set(rec, S.WAITING, "waiting for the channel's dataset job")
                continue
            self._submit_batch(channel, items, refs)

    def _drop_pending(self, key: str) -> None:
        pair = self._pending_of.pop(key, None)
        if pair is not None and self._pending.get(pair) == key:
            del self._pending[pair]

    def _submit_batch(self, channel: Channel, items: list[ReadyFolder], refs: list[str]) -> None:
        """Send ready folders: first attempts together, retries one by one (exist_ok + link)."""
        recs = [self.records[i.key] for i in items if i.key in self.records]
        for item in items:
            self._drop_pending(item.key)
        first = [r for r in recs if r.attempt <= 1]
        if first:
            self._send(channel, first, refs, single=False)
        for rec in recs:
            if rec.attempt > 1:
                self._send(channel, [rec], refs, single=True)

    def _send(
        self, channel: Channel, recs: list[FolderRecord], refs: list[str], *, single: bool
    ) -> None:
        dataset = channel.dataset_key
        if single:
            idem = sample_key_for(dataset, recs[0].content_hash or "", recs[0].attempt)
        else:
            idem = batch_key(dataset, [(r.content_hash or "", r.attempt) for r in recs])
        for rec in recs:
            rec.idempotency_key = idem
            rec.job_id = rec.sample_job_id = None
            self._set(rec, S.SUBMITTING, "submitting its job")
        self._claim(dataset, recs, "submitting")
        self._save()  # the intent is durable before the job exists
        try:
            if single:
                job_id = self._submit_single(channel, recs[0], refs)
            else:
                job_id = self.gateway.add_samples(
                    [r.path for r in recs],
                    refs,
                    test_only=channel.test_only,
                    local=channel.local,
                    idempotency_key=idem,
                )
        except SubmitRefused as e:
            self._refused(channel, recs, e.reason)
            return
        except Exception as e:  # noqa: BLE001 - the queue is unreachable: retried at the next rescan
            log.warning("could not submit %d folder(s), will retry: %s", len(recs), e)
            return
        log.info(
            "channel %s: %d folder(s) in job %s",
            rd.display_name(channel.name),
            len(recs),
            job_id,
        )
        self._after_submit(channel, recs, job_id, "single" if single else "batch")

    def _submit_single(self, channel: Channel, rec: FolderRecord, refs: list[str]) -> str:
        """One folder: add it (an existing sample is fine), then link it to every dataset.

        The link makes sure a sample that was already on the node (under another
        dataset) ends up linked to this channel's dataset too. Returns the job whose
        success means the folder is registered.
        """
        dataset = channel.dataset_key
        h = rec.content_hash or ""
        add_id = self.gateway.add_sample(
            rec.path,
            refs,
            test_only=channel.test_only,
            local=channel.local,
            idempotency_key=sample_key_for(dataset, h, rec.attempt),
        )
        rec.sample_job_id = add_id
        last = add_id
        for i, ref in enumerate(refs):
            last = self.gateway.link_samples(
                ref,
                [self.gateway.ref(add_id)],
                idempotency_key=sample_key_for(dataset, h, rec.attempt, f"link{i}"),
                after=[last],
            )
        return last

    def _refused(self, channel: Channel, recs: list[FolderRecord], reason: str) -> None:
        """The queue refused the job: look at each folder again on its own."""
        for rec in recs:
            self._drop_pending(rec.key)
            self._release_claim(channel.dataset_key, rec)
        if len(recs) == 1:
            rec = recs[0]
            self._set(rec, S.FAILED, reason)
            self._next_failed_retry[rec.key] = self.clock() + self._retry_delay(rec)
            return
        for rec in recs:
            self._set(rec, S.WAITING, f"batch refused ({reason}); looking at it again")
            rec.fingerprint = None
            self._evaluate(rec.channel, rec.name)

    def _resubmit_interrupted(self) -> None:
        """Folders left ``submitting`` by a watcher that stopped: resubmit the same key."""
        groups: dict[str, list[FolderRecord]] = {}
        for rec in self.records.values():
            if rec.status == S.SUBMITTING.value:
                groups.setdefault(rec.idempotency_key or rec.key, []).append(rec)
        for recs in groups.values():
            channel = self.channels.get(recs[0].channel)
            refs = self._dataset_refs(channel) if channel is not None else None
            if channel is None or refs is None:
                for rec in recs:
                    self._set(rec, S.WAITING, "interrupted submission; looking at it again")
                    rec.fingerprint = None
                continue
            # same folders, same idempotency keys: the queue answers with the same job
            single = (recs[0].idempotency_key or "").startswith("watch:sample:")
            self._send(channel, recs, refs, single=single)

    def _after_submit(
        self, channel: Channel, recs: list[FolderRecord], job_id: str, kind: str
    ) -> None:
        now = self.wallclock()
        for rec in recs:
            rec.job_id = job_id
            rec.submitted_at = now
            self._set(rec, S.QUEUED, f"in job {job_id}")
        self._claim(channel.dataset_key, recs, "queued")
        self._track(job_id, kind, *[r.key for r in recs])

    def _claim(self, dataset: str, recs: list[FolderRecord], status: str) -> None:
        self.state.set_claims(
            dataset,
            {
                r.content_hash: {
                    "folder": r.key,
                    "status": status,
                    "job_id": r.job_id,
                    "attempt": r.attempt,
                }
                for r in recs
                if r.content_hash
            },
        )

    def _release_claim(self, dataset: str, rec: FolderRecord) -> None:
        if rec.content_hash:
            claim = self.state.claim(dataset, rec.content_hash)
            if claim and claim.get("folder") == rec.key and claim.get("root") == self.state.root_id:
                claim.update(status="failed", job_id=rec.job_id, attempt=rec.attempt)
                claim.pop("root", None)
                self.state.set_claims(dataset, {rec.content_hash: claim})

    def _track(self, job_id: str, kind: str, *folders: str) -> None:
        tracked = self.tracked.setdefault(job_id, _Tracked(kind))
        for key in folders:
            if key not in tracked.folders:
                tracked.folders.append(key)

    def _submit_dataset(self, channel: Channel, crec: ChannelRecord) -> None:
        crec.dataset_attempt += 1
        try:
            job_id = self.gateway.add_dataset(
                channel.dataset or {},
                idempotency_key=dataset_idempotency_key(channel.dataset_key, crec.dataset_attempt),
            )
        except SubmitRefused as e:
            self._dataset_failed(crec, f"dataset refused: {e.reason}")
            return
        crec.reason = None
        crec.dataset_job_id = job_id
        self.tracked[job_id] = _Tracked("dataset", channel=channel.name)
        self.state.save_channel(crec)

    # --- jobs ------------------------------------------------------------------------------

    def _poll_jobs(self) -> None:
        for job_id in list(self.tracked):
            tracked = self.tracked[job_id]
            view = self.gateway.job(job_id)
            if view is not None and view.active:
                continue
            del self.tracked[job_id]
            if tracked.kind == "dataset":
                self._dataset_done(tracked.channel or "", job_id, view)
                continue
            recs = [self.records[k] for k in tracked.folders if k in self.records]
            recs = [r for r in recs if r.job_id == job_id]
            if not recs:
                continue
            if view is None:
                self._job_failed(tracked, recs, job_id, "job record not found (purged or expired)")
            elif view.state == "succeeded":
                self._job_succeeded(tracked, recs, job_id, set(view.keys))
            else:
                self._job_failed(tracked, recs, job_id, view.error or "job failed")

    def _job_succeeded(
        self, tracked: _Tracked, recs: list[FolderRecord], job_id: str, keys: set[str]
    ) -> None:
        now = self.wallclock()
        registered: dict[str, list[FolderRecord]] = {}
        for rec in recs:
            if tracked.kind == "single" or rec.content_hash in keys:
                rec.sample_key = rec.content_hash
                rec.registered_at = now
                self._set(rec, S.REGISTERED, None)
                registered.setdefault(rec.dataset_keys[0] if rec.dataset_keys else "", []).append(
                    rec
                )
                self._maybe_archive(rec)
            else:
                self._set(
                    rec,
                    S.FAILED,
                    f"job {job_id} registered other content: the folder changed while it ran",
                )
                rec.fingerprint = None  # look at its new content
                self._release_claim(rec.dataset_keys[0] if rec.dataset_keys else "", rec)
        for dataset, group in registered.items():
            self._claim(dataset, group, "registered")

    def _job_failed(
        self, tracked: _Tracked, recs: list[FolderRecord], job_id: str, reason: str
    ) -> None:
        channel = self.channels.get(recs[0].channel)
        if tracked.kind == "batch" and channel is not None:
            refs = self._dataset_refs(channel)
            log.info(
                "batch job %s failed (%s): sending its %d folders one by one",
                job_id,
                reason,
                len(recs),
            )
            for rec in recs:
                rec.failures.append({"at": self.wallclock(), "reason": reason, "job_id": job_id})
                if refs is None:
                    self._release_claim(channel.dataset_key, rec)
                    rec.fingerprint = None
                    self._set(rec, S.WAITING, f"batch failed ({reason}); waiting for the dataset")
                    continue
                self._send(channel, [rec], refs, single=True)
            return
        for rec in recs:
            dataset = rec.dataset_keys[0] if rec.dataset_keys else ""
            if tracked.kind == "single" and rec.sample_job_id and rec.sample_job_id != job_id:
                first = self.gateway.job(rec.sample_job_id)
                if first is not None and first.state == "failed" and first.error:
                    reason = first.error  # the add failed: its error, not the link's
            self._set(rec, S.FAILED, reason)
            self._release_claim(dataset, rec)
            self._next_failed_retry[rec.key] = self.clock() + self._retry_delay(rec)
            self._reopen_duplicates_of(rec.key)

    def _retry_delay(self, rec: FolderRecord) -> float:
        return min(FAILED_RETRY_MAX, self.settings.rescan_interval * 2 ** min(rec.attempt, 10))

    def _reopen_duplicates_of(self, key: str) -> None:
        """Folders set aside as copies of a folder whose job failed get their own chance."""
        for rec in self.records.values():
            if rec.status == S.DUPLICATE.value and rec.duplicate_of == key:
                rec.fingerprint = None
                rec.duplicate_of = None
                self._set(rec, S.WAITING, f"the folder it duplicated ({key}) failed")
                self._evaluate(rec.channel, rec.name)

    def _dataset_done(self, chan: str, job_id: str, view) -> None:
        crec = self.channel_records.get(chan)
        if crec is None or crec.dataset_job_id != job_id:
            return
        if view is not None and view.state == "succeeded":
            crec.dataset_registered, crec.reason = True, None
            channel = self.channels.get(chan)
            if channel is not None and view.keys and view.keys[0] != channel.dataset_key:
                log.warning(
                    "channel %s: the node keyed its dataset %s, not %s (sha256 of the opener)",
                    chan,
                    view.keys[0],
                    channel.dataset_key,
                )
            self.state.save_channel(crec)
            return
        reason = view.error if view is not None else "the job's record is gone (purged)"
        self._dataset_failed(crec, f"dataset registration failed: {reason}")

    def _dataset_failed(self, crec: ChannelRecord, reason: str) -> None:
        """Keep the channel's folders waiting; submit the dataset again after a backoff."""
        crec.reason = reason
        delay = min(
            FAILED_RETRY_MAX, self.settings.rescan_interval * 2 ** min(crec.dataset_attempt, 10)
        )
        self._dataset_retry_at[crec.name] = self.clock() + delay
        log.warning(
            "channel %s: %s; trying again in %.0fs", rd.display_name(crec.name), reason, delay
        )
        self.state.save_channel(crec)

    # --- archiving ------------------------------------------------------------------------

    def _maybe_archive(self, rec: FolderRecord) -> None:
        """With --archive-to, move a registered folder (and its marker) out of the root."""
        if self.archive_to is None or rec.archived_to:
            return
        src = Path(rec.path)
        if not src.is_dir():
            return
        dest_dir = self.archive_to / rec.channel
        dest = dest_dir / rec.name
        n = 1
        while dest.exists():
            dest = dest_dir / f"{rec.name}.{n}"
            n += 1
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(dest))
            marker = rd.marker_path(src, self.marker)
            if marker is not None and marker.is_file():
                shutil.move(str(marker), str(dest.with_name(dest.name + self.marker)))
        except OSError as e:
            rec.reason = f"registered; could not archive to {dest}: {e}"
            self._dirty_records.add(rec.key)
            return
        rec.archived_to = str(dest)
        self._dirty_records.add(rec.key)

    # --- persistence ------------------------------------------------------------------------

    def _save(self) -> None:
        if not self._dirty_records:
            return
        keys, self._dirty_records = self._dirty_records, set()
        self.state.save_folders(self.records[k] for k in keys if k in self.records)
