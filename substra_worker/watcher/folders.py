"""One entry of a channel: not a folder, bad, gone, still settling, a copy, or batched?

``Folders.evaluate`` looks at one entry: it walks the folder, fingerprints it
and asks the readiness rules. A folder found ready is hashed (its content hash
is the data-sample key the node will compute), and its fate is decided a few
at a time by ``decide``: a copy of content already claimed, already
registered, or into its channel's batch. Deciding in groups lets the claims of
every hash be read in one round trip; a batch that fills is sent at once.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from substra_worker.watcher import readiness as rd
from substra_worker.watcher.batching import ReadyFolder
from substra_worker.watcher.channel import CONFIG_NAME, Channel
from substra_worker.watcher.context import FINAL_VALUES, S, WatchContext, ignored, log
from substra_worker.watcher.state import FolderRecord

IN_FLIGHT_VALUES = (S.SUBMITTING.value, S.QUEUED.value)


@dataclass(frozen=True)
class _Hashed:
    """A ready folder, hashed, whose fate ``decide`` has not settled yet."""

    channel: Channel
    fingerprint: rd.Fingerprint
    content_hash: str


class Folders:
    """The decisions about single folders."""

    def __init__(self, ctx: WatchContext):
        self.ctx = ctx
        self._hashed: dict[str, _Hashed] = {}  # folder key -> hashed, not decided yet
        self._deciding = False

    def evaluate(self, chan: str, name: str) -> None:
        """Look at one entry of a channel; an unexpected error is that folder's problem only."""
        self._guarded(chan, name, self._look_at, chan, name)

    def held(self, key: str) -> bool:
        """Whether the folder is ready and waiting: hashed, or in an open batch."""
        return key in self._hashed or self.ctx.batcher.holds(key)

    def pending(self) -> int:
        """Folders hashed and not decided yet."""
        return len(self._hashed)

    # --- looking at one entry ----------------------------------------------------------

    def _guarded(self, chan: str, name: str, action: Callable[..., None], *args: object) -> None:
        try:
            action(*args)
        except RedisError:
            raise  # not the folder's fault: the step fails and is tried again
        except Exception as e:  # noqa: BLE001 - one odd folder must not stop the others
            log.exception("unexpected error on %s", rd.display_name(f"{chan}/{name}"))
            self.reject(self.ctx.record(chan, name), f"unexpected error: {type(e).__name__}: {e}")

    def _look_at(self, chan: str, name: str) -> None:
        ctx = self.ctx
        channel = ctx.channels.get(chan)
        if channel is None:
            return  # the channel's own record says why
        if ignored(name) or name in channel.reserved:
            return
        key = f"{chan}/{name}"
        path = ctx.root / chan / name
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                self.reject(ctx.record(chan, name), "symlink is broken")
            else:
                self.gone(key)
            return
        except OSError as e:
            self.reject(ctx.record(chan, name), f"cannot read it: {e.strerror}")
            return
        if not stat.S_ISDIR(st.st_mode):
            self._stray_file(chan, name)
            return
        rec = ctx.record(chan, name)
        if rec.kind != "folder":
            rec.kind = "folder"
            ctx.dirty.add(key)
        if rec.status in IN_FLIGHT_VALUES:
            return  # its job decides; a change is seen when it finishes
        if rec.archived_to:
            # the same name dropped again after its folder was archived: a new arrival
            rec.archived_to = None
            ctx.dirty.add(key)
        problem = rd.name_problem(name)
        if problem:
            self.reject(rec, problem)
            return
        now = ctx.clock()
        try:
            files = rd.walk(path, ctx.root, root_real=ctx.root_real)
        except rd.FolderGone:
            self.gone(key)
            return
        except rd.FolderChanging:
            ctx.readiness.observe(key, None, now)
            return
        except rd.BadFolder as e:
            self.reject(rec, e.reason)
            return
        fp = rd.fingerprint(files)
        recorded = rd.Fingerprint.from_dict(rec.fingerprint)
        if rec.status in FINAL_VALUES and recorded == fp:
            ctx.readiness.forget(key)
            ctx.archiver.maybe_archive(rec)
            return
        if (
            rec.status == S.FAILED.value
            and recorded == fp
            and ctx.clock() < ctx.next_failed_retry.get(key, 0.0)
        ):
            return  # retried later, or at once when it changes
        if rec.status == S.REJECTED.value and recorded == fp:
            return  # nothing changed since it was refused
        hashed = self._hashed.get(key)
        if hashed is not None:  # ready, its fate not decided yet: as good as batched
            if hashed.fingerprint == fp:
                return
            self.unbatch(rec)
        elif ctx.batcher.holds(key):
            if recorded == fp:
                return
            self.unbatch(rec)
        has_marker = rd.marker_is_fresh(path, ctx.marker, files)
        verdict = ctx.readiness.observe(key, fp, now, marker=has_marker)
        if verdict is rd.Verdict.WAITING:
            if rec.status != S.STALLED.value and rec.status not in FINAL_VALUES:
                ctx.set(rec, S.WAITING, "waiting for the folder to settle")
            return
        if verdict is rd.Verdict.STALLED:
            waited = now - (ctx.readiness.waiting_since(key) or now)
            ctx.set(
                rec,
                S.STALLED,
                f"still changing after {waited:.0f}s (max_settle_wait "
                f"{ctx.settings.max_settle_wait:g}s); looked at again until it settles",
            )
            return
        # ready
        ctx.readiness.forget(key)
        if fp.files == 0:
            self.reject(rec, "empty folder: no file to register", fp)
            return
        try:
            content_hash = rd.sample_key(files)
            if rd.folder_fingerprint(path, ctx.root, root_real=ctx.root_real) != fp:
                raise rd.FolderChanging("changed while it was hashed")
        except rd.FolderChanging:
            ctx.readiness.observe(key, None, now)
            return
        except rd.FolderGone:
            self.gone(key)
            return
        except rd.BadFolder as e:
            self.reject(rec, e.reason, fp)
            return
        self._hashed[key] = _Hashed(channel, fp, content_hash)
        if len(self._hashed) >= channel.batch_size:
            self.decide()  # enough for a batch: do not keep the workers waiting

    def reject(self, rec: FolderRecord, reason: str, fp: rd.Fingerprint | None = None) -> None:
        """Refuse a folder for ``reason``; with ``fp``, only a change makes it looked at again."""
        if fp is not None:
            rec.fingerprint = fp.as_dict()
            self.ctx.dirty.add(rec.key)
        self.ctx.readiness.forget(rec.key)
        if self.held(rec.key):
            self.unbatch(rec)
        self.ctx.set(rec, S.REJECTED, reason)

    def _stray_file(self, chan: str, name: str) -> None:
        rec = self.ctx.record(chan, name)
        if rec.kind != "file":
            rec.kind = "file"
            self.ctx.dirty.add(rec.key)
        self.ctx.readiness.forget(rec.key)
        self.ctx.set(
            rec,
            S.REJECTED,
            "stray file at channel level: a channel holds only sample folders, "
            f"{CONFIG_NAME}, the dataset files it names and '<folder>{self.ctx.marker}' markers",
        )

    def gone(self, key: str) -> None:
        """The entry is no longer there: a folder not registered yet has vanished."""
        ctx = self.ctx
        rec = ctx.records.get(key)
        ctx.readiness.forget(key)
        if rec is None:
            return
        if self.held(key):
            self.unbatch(rec)
        if rec.kind == "file":
            ctx.forget(key)
            return
        if rec.status in (S.WAITING.value, S.STALLED.value, S.REJECTED.value):
            ctx.set(rec, S.VANISHED, "deleted or moved away before it was registered")

    def unbatch(self, rec: FolderRecord) -> None:
        """Take a ready folder back (it changed, vanished or was refused)."""
        self._hashed.pop(rec.key, None)
        self.ctx.batcher.discard(rec.key)
        self.ctx.drop_pending(rec.key)

    # --- deciding the fate of ready folders -------------------------------------------

    def decide(self) -> None:
        """Settle every hashed folder: their claims read in one round trip, then each in turn."""
        if self._deciding:
            return  # called back from a decision (a refused batch): the loop below goes on
        self._deciding = True
        try:
            while self._hashed:
                self._decide(self._hashed)
        finally:
            self._deciding = False

    def _decide(self, hashed: dict[str, _Hashed]) -> None:
        ctx = self.ctx
        by_dataset: dict[str, list[str]] = {}
        for h in hashed.values():
            by_dataset.setdefault(h.channel.dataset_key, []).append(h.content_hash)
        try:
            for dataset, hashes in by_dataset.items():
                ctx.state.read_claims(dataset, hashes)
            for key in list(hashed):
                h = hashed.pop(key, None)
                rec = ctx.records.get(key)
                if h is None or rec is None:
                    continue  # taken back meanwhile, or forgotten
                self._guarded(rec.channel, rec.name, self._ready, rec, h)
        finally:
            ctx.state.forget_read_claims()

    def _ready(self, rec: FolderRecord, hashed: _Hashed) -> None:
        ctx = self.ctx
        channel, fp, content_hash = hashed.channel, hashed.fingerprint, hashed.content_hash
        dataset = channel.dataset_key
        now_wall = ctx.wallclock()
        same = rec.content_hash == content_hash
        if same and rec.status in FINAL_VALUES:
            rec.fingerprint = fp.as_dict()  # touched, same content
            ctx.dirty.add(rec.key)
            ctx.archiver.maybe_archive(rec)
            return
        changed_note = None
        if not same and rec.status in FINAL_VALUES and rec.content_hash:
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
        holder = ctx.pending.get((dataset, content_hash))
        claim = ctx.state.claim(dataset, content_hash)
        if holder is None and claim is not None:
            mine = claim.get("root") == ctx.state.root_id and claim.get("folder") == rec.key
            if claim.get("status") in ("submitting", "queued", "registered") and not mine:
                holder = claim.get("folder")
                if claim.get("root") != ctx.state.root_id:
                    holder = f"{holder} (another watch root)"
            elif mine and claim.get("status") == "registered":
                rec.fingerprint, rec.content_hash = fp.as_dict(), content_hash
                rec.sample_key, rec.job_id = content_hash, claim.get("job_id")
                rec.dataset_keys = list(channel.dataset_keys)
                ctx.set(rec, S.REGISTERED, changed_note)
                ctx.archiver.maybe_archive(rec)
                return
        if holder is not None and holder != rec.key:
            rec.fingerprint, rec.content_hash = fp.as_dict(), content_hash
            rec.duplicate_of = holder
            rec.sample_key = content_hash
            rec.dataset_keys = list(channel.dataset_keys)
            note = f"same content as {holder} (sample {content_hash}): nothing new to register"
            ctx.set(rec, S.DUPLICATE, f"{changed_note}; {note}" if changed_note else note)
            ctx.archiver.maybe_archive(rec)
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
        ctx.drop_pending(rec.key)
        ctx.pending[(dataset, content_hash)] = rec.key
        ctx.pending_of[rec.key] = (dataset, content_hash)
        ctx.batcher.add(
            channel.name,
            channel.batch_size,
            ReadyFolder(rec.key, rec.path, content_hash),
            ctx.clock(),
        )
        ctx.set(rec, S.WAITING, changed_note or "ready: waiting for its batch")
        if ctx.batcher.full(channel.name):
            ctx.sender.send_full(channel.name)
