"""Per-folder state of the watcher, kept in Redis next to the job status store.

Which folder became which job and which sample key, when, with which content
hash; which folders were refused or failed, and why. Living in Redis (not a
local file) it survives watcher restarts, is shared with the CLI and the API
on any machine, and is written in the same place as the jobs it points to.

Layout (``<p>`` is the key prefix):

- ``<p>watch:<root id>:folders``  hash: ``"<channel>/<folder>"`` -> FolderRecord JSON
- ``<p>watch:<root id>:channels`` hash: channel name -> ChannelRecord JSON
- ``<p>watch:roots``              hash: root id -> absolute root path
- ``<p>watch:samples:<dataset>``  hash: content hash -> claim JSON (folder, job, status):
  the once-and-only-once index, shared by every root that feeds the dataset
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path

import redis

DEFAULT_PREFIX = "sw:"  # the status store's prefix: watcher keys sit next to the jobs
MAX_EVENTS = 20  # per-folder history entries kept


class FolderStatus(StrEnum):
    WAITING = "waiting"  # seen, not settled yet
    STALLED = "stalled"  # did not settle within max_settle_wait; still watched
    REJECTED = "rejected"  # bad input: see reason; looked at again when it changes
    VANISHED = "vanished"  # deleted or moved away before it was registered
    SUBMITTING = "submitting"  # claimed; the job is being submitted
    QUEUED = "queued"  # in a job that has not finished
    REGISTERED = "registered"  # a data sample on the node (sample_key)
    DUPLICATE = "duplicate"  # same content as an already registered or queued folder
    FAILED = "failed"  # its job failed: see reason


FINAL = {FolderStatus.REGISTERED, FolderStatus.DUPLICATE}
IN_FLIGHT = {FolderStatus.SUBMITTING, FolderStatus.QUEUED}


@dataclass
class FolderRecord:
    """Everything the watcher knows about one entry of a channel."""

    key: str  # "<channel>/<folder>"
    channel: str
    name: str
    path: str
    status: str = FolderStatus.WAITING.value
    reason: str | None = None
    kind: str = "folder"  # "folder", or "file" for a stray file at channel level
    fingerprint: dict | None = None  # of the content that was hashed
    content_hash: str | None = None  # = the data sample key the node computes
    sample_key: str | None = None  # set once registered (or the original's, for a duplicate)
    duplicate_of: str | None = None  # folder key holding the same content
    dataset_keys: list[str] = field(default_factory=list)
    job_id: str | None = None  # the job whose success means registered
    sample_job_id: str | None = None  # the add job, when job_id is the link job after it
    idempotency_key: str | None = None
    attempt: int = 0  # submissions of this content so far
    first_seen: float = 0.0  # epoch seconds
    updated_at: float = 0.0
    ready_at: float | None = None
    submitted_at: float | None = None
    registered_at: float | None = None
    archived_to: str | None = None
    previous: list[dict] = field(default_factory=list)  # earlier samples of a changed folder
    failures: list[dict] = field(default_factory=list)  # {at, reason, job_id}
    events: list[dict] = field(default_factory=list)  # {at, status, reason}

    @property
    def state(self) -> FolderStatus:
        return FolderStatus(self.status)

    def set(self, status: FolderStatus, reason: str | None = None, *, now: float) -> bool:
        """Move to ``status`` with ``reason``; False (and nothing written) when unchanged."""
        if self.status == status.value and self.reason == reason:
            return False
        self.status = status.value
        self.reason = reason
        self.updated_at = now
        self.events.append({"at": now, "status": status.value, "reason": reason})
        del self.events[:-MAX_EVENTS]
        if status is FolderStatus.FAILED:
            self.failures.append({"at": now, "reason": reason, "job_id": self.job_id})
            del self.failures[:-MAX_EVENTS]
        return True

    def to_json(self) -> str:
        # Every field already holds plain JSON values: dumping the instance's dict
        # skips the deep copy of ``dataclasses.asdict``, the bulk of a save's cost.
        return json.dumps(vars(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> FolderRecord:
        return cls(**_known(json.loads(text), _FOLDER_FIELDS))


@dataclass
class ChannelRecord:
    """A channel's state: usable or not (and why), and its dataset registration job.

    ``reason`` also holds why the dataset a channel describes is not registered
    yet (its job failed): the channel's folders wait meanwhile.
    """

    name: str
    ok: bool = False
    reason: str | None = None
    dataset_keys: list[str] = field(default_factory=list)
    dataset_job_id: str | None = None
    dataset_attempt: int = 0
    dataset_registered: bool = False  # the dataset it describes is on the node
    updated_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(vars(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ChannelRecord:
        return cls(**_known(json.loads(text), _CHANNEL_FIELDS))


_FOLDER_FIELDS = frozenset(f.name for f in fields(FolderRecord))
_CHANNEL_FIELDS = frozenset(f.name for f in fields(ChannelRecord))


def _known(data: dict, names: frozenset[str]) -> dict:
    """The fields a record knows (a record written by a newer version may hold more)."""
    return {k: v for k, v in data.items() if k in names}


def root_id(root: str | os.PathLike[str]) -> str:
    """A short stable id of a watch root (its absolute real path)."""
    real = os.path.realpath(root)
    return hashlib.sha1(real.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()[
        :12
    ]


def field_name(name: str) -> str:
    """A Redis-safe field for a folder key or channel name.

    File names may hold bytes that are not UTF-8 (Python keeps them as lone
    surrogates, which no Redis client can encode); they are escaped here, and
    the record's JSON keeps the exact name.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class WatchState:
    """Read and write the watcher's records for one root."""

    def __init__(
        self, client: redis.Redis, root: str | os.PathLike[str], prefix: str = DEFAULT_PREFIX
    ):
        self.redis = client
        self.root = Path(os.path.realpath(root))
        self.prefix = prefix
        self.root_id = root_id(root)
        base = f"{prefix}watch:{self.root_id}"
        self._folders = f"{base}:folders"
        self._channels = f"{base}:channels"
        self._roots = f"{prefix}watch:roots"
        self._claims_read: dict[tuple[str, str], str | bytes | None] = {}  # see read_claims

    def register_root(self) -> None:
        self.redis.hset(self._roots, self.root_id, str(self.root))

    # --- folders ---------------------------------------------------------------------

    def folders(self, status: str | None = None, channel: str | None = None) -> list[FolderRecord]:
        """Every folder record of this root, optionally only one status or channel."""
        records = [FolderRecord.from_json(v) for v in self.redis.hvals(self._folders)]
        if status is not None:
            records = [r for r in records if r.status == status]
        if channel is not None:
            records = [r for r in records if r.channel == channel]
        return sorted(records, key=lambda r: r.key)

    def folder(self, key: str) -> FolderRecord | None:
        raw = self.redis.hget(self._folders, field_name(key))
        return None if raw is None else FolderRecord.from_json(raw)

    def save_folders(self, records: Iterable[FolderRecord]) -> None:
        mapping = {field_name(r.key): r.to_json() for r in records}
        if mapping:
            self.redis.hset(self._folders, mapping=mapping)

    def save_folder(self, record: FolderRecord) -> None:
        self.save_folders([record])

    def delete_folder(self, key: str) -> None:
        self.redis.hdel(self._folders, field_name(key))

    # --- channels --------------------------------------------------------------------

    def channels(self) -> list[ChannelRecord]:
        records = [ChannelRecord.from_json(v) for v in self.redis.hvals(self._channels)]
        return sorted(records, key=lambda r: r.name)

    def channel(self, name: str) -> ChannelRecord | None:
        raw = self.redis.hget(self._channels, field_name(name))
        return None if raw is None else ChannelRecord.from_json(raw)

    def save_channel(self, record: ChannelRecord) -> None:
        record.updated_at = time.time()
        self.redis.hset(self._channels, field_name(record.name), record.to_json())

    def delete_channel(self, name: str) -> None:
        self.redis.hdel(self._channels, field_name(name))

    # --- the once-and-only-once index ------------------------------------------------

    def _samples(self, dataset_key: str) -> str:
        return f"{self.prefix}watch:samples:{dataset_key}"

    def claim(self, dataset_key: str, content_hash: str) -> dict | None:
        """Who holds this content for this dataset: {folder, root, job_id, status}, or None."""
        try:
            raw = self._claims_read[(dataset_key, content_hash)]
        except KeyError:
            raw = self.redis.hget(self._samples(dataset_key), content_hash)
        return None if raw is None else json.loads(raw)

    def read_claims(self, dataset_key: str, content_hashes: Iterable[str]) -> None:
        """Read the claims of several hashes in one round trip, for ``claim`` to answer from.

        They are kept until ``forget_read_claims``, and this watcher's own writes
        update them, so a caller that reads a batch's claims at once sees the
        same thing as one reading them one by one.
        """
        hashes = list(dict.fromkeys(content_hashes))
        if hashes:
            values = self.redis.hmget(self._samples(dataset_key), hashes)
            for h, raw in zip(hashes, values, strict=True):
                self._claims_read[(dataset_key, h)] = raw

    def forget_read_claims(self) -> None:
        self._claims_read.clear()

    def set_claims(self, dataset_key: str, claims: dict[str, dict]) -> None:
        """Write several claims (content hash -> claim) for ``dataset_key`` at once."""
        if claims:
            mapping = {
                h: json.dumps({**c, "root": self.root_id}, sort_keys=True)
                for h, c in claims.items()
            }
            self.redis.hset(self._samples(dataset_key), mapping=mapping)
            for h, raw in mapping.items():
                if (dataset_key, h) in self._claims_read:
                    self._claims_read[(dataset_key, h)] = raw

    def drop_claim(self, dataset_key: str, content_hash: str) -> None:
        self.redis.hdel(self._samples(dataset_key), content_hash)
        if (dataset_key, content_hash) in self._claims_read:
            self._claims_read[(dataset_key, content_hash)] = None

    # --- summaries -------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Folder count per status."""
        out: dict[str, int] = {}
        for r in self.folders():
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def clear(self) -> None:
        """Forget this root's folder and channel records (not the sample index)."""
        self.redis.delete(self._folders, self._channels)
        self.redis.hdel(self._roots, self.root_id)


def known_roots(client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """root id -> root path of every root a watcher has recorded."""
    return {
        k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
        for k, v in client.hgetall(f"{prefix}watch:roots").items()
    }
