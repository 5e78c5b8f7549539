"""Coalesce ready folders into ``add_data_samples`` jobs.

Folders that become ready close together go in one job: a batch is sent when it
holds the channel's batch size, or when its oldest folder has waited the batch
window. One job per folder would cost one HTTP round trip per sample; one job
for everything would make a single bad folder fail them all (the watcher then
splits a failed batch into single-folder jobs).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReadyFolder:
    """A settled folder, hashed, waiting for its job."""

    key: str  # "<channel>/<folder>"
    path: str
    content_hash: str


@dataclass
class _Open:
    size: int
    opened_at: float
    items: list[ReadyFolder] = field(default_factory=list)


class Batcher:
    """Per-channel open batches, flushed on size or on age.

    An index from folder key to channel answers ``holds`` and ``discard``
    without scanning every open batch: the watcher asks for each folder it looks at.
    """

    def __init__(self, window: float):
        self.window = window
        self._open: dict[str, _Open] = {}
        self._where: dict[str, str] = {}  # folder key -> channel of the batch holding it

    def add(self, channel: str, batch_size: int, item: ReadyFolder, now: float) -> None:
        batch = self._open.get(channel)
        if batch is None:
            batch = self._open[channel] = _Open(batch_size, now)
        batch.size = batch_size
        if self._where.get(item.key) != channel:
            batch.items.append(item)
            self._where[item.key] = channel

    def discard(self, key: str) -> bool:
        """Take a folder out of its open batch (it changed or vanished); True if it was in one."""
        channel = self._where.pop(key, None)
        if channel is None:
            return False
        batch = self._open[channel]
        batch.items = [item for item in batch.items if item.key != key]
        return True

    def holds(self, key: str) -> bool:
        return key in self._where

    def full(self, channel: str) -> bool:
        """Whether the channel's open batch holds its batch size (or more)."""
        batch = self._open.get(channel)
        return batch is not None and len(batch.items) >= batch.size

    def take_full(self, channel: str, now: float) -> list[list[ReadyFolder]]:
        """The channel's full batches, to send now; the rest of its folders stay open."""
        batch = self._open.get(channel)
        if batch is None:
            return []
        out = self._take_full(batch, now)
        if not batch.items:
            del self._open[channel]
        return out

    def due(self, now: float, *, force: bool = False) -> list[tuple[str, list[ReadyFolder]]]:
        """Batches to send now: every full one, and the rest of those older than the window."""
        out: list[tuple[str, list[ReadyFolder]]] = []
        for channel in list(self._open):
            batch = self._open[channel]
            out.extend((channel, items) for items in self._take_full(batch, now))
            if batch.items and (force or now - batch.opened_at >= self.window):
                out.append((channel, self._taken(batch.items)))
                batch.items = []
            if not batch.items:
                del self._open[channel]
        return out

    def _take_full(self, batch: _Open, now: float) -> list[list[ReadyFolder]]:
        out = []
        while len(batch.items) >= batch.size:
            out.append(self._taken(batch.items[: batch.size]))
            batch.items = batch.items[batch.size :]
            batch.opened_at = now
        return out

    def _taken(self, items: list[ReadyFolder]) -> list[ReadyFolder]:
        for item in items:
            self._where.pop(item.key, None)
        return items

    def next_due(self) -> float | None:
        """When the oldest open batch reaches the window."""
        times = [b.opened_at + self.window for b in self._open.values() if b.items]
        return min(times) if times else None

    def __len__(self) -> int:
        return len(self._where)
