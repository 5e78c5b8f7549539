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
    """Per-channel open batches, flushed on size or on age."""

    def __init__(self, window: float):
        self.window = window
        self._open: dict[str, _Open] = {}

    def add(self, channel: str, batch_size: int, item: ReadyFolder, now: float) -> None:
        batch = self._open.get(channel)
        if batch is None:
            batch = self._open[channel] = _Open(batch_size, now)
        batch.size = batch_size
        if all(i.key != item.key for i in batch.items):
            batch.items.append(item)

    def discard(self, key: str) -> bool:
        """Take a folder out of its open batch (it changed or vanished); True if it was in one."""
        for batch in self._open.values():
            for i, item in enumerate(batch.items):
                if item.key == key:
                    del batch.items[i]
                    return True
        return False

    def holds(self, key: str) -> bool:
        return any(item.key == key for b in self._open.values() for item in b.items)

    def due(self, now: float, *, force: bool = False) -> list[tuple[str, list[ReadyFolder]]]:
        """Batches to send now: every full one, and the rest of those older than the window."""
        out: list[tuple[str, list[ReadyFolder]]] = []
        for channel in list(self._open):
            batch = self._open[channel]
            while len(batch.items) >= batch.size:
                out.append((channel, batch.items[: batch.size]))
                batch.items = batch.items[batch.size :]
                batch.opened_at = now
            if batch.items and (force or now - batch.opened_at >= self.window):
                out.append((channel, batch.items))
                batch.items = []
            if not batch.items:
                del self._open[channel]
        return out

    def next_due(self) -> float | None:
        """When the oldest open batch reaches the window."""
        times = [b.opened_at + self.window for b in self._open.values() if b.items]
        return min(times) if times else None

    def __len__(self) -> int:
        return sum(len(b.items) for b in self._open.values())
