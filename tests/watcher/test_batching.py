"""Batches close on size or on age."""

from __future__ import annotations

from substra_worker.watcher.batching import Batcher, ReadyFolder


def item(i: int) -> ReadyFolder:
    return ReadyFolder(f"c/s{i}", f"/r/c/s{i}", f"{i:064x}")


def test_size_then_window():
    b = Batcher(window=1.0)
    for i in range(7):
        b.add("c", 3, item(i), now=0.0)
    b.add("c", 3, item(0), now=0.0)  # already there: ignored
    full = b.due(0.1)
    assert [len(items) for _, items in full] == [3, 3]
    assert len(b) == 1
    assert b.due(0.5) == []
    assert b.next_due() == 1.1
    rest = b.due(1.2)
    assert [[i.key for i in items] for _, items in rest] == [["c/s6"]]
    assert len(b) == 0 and b.next_due() is None


def test_channels_apart_and_discard():
    b = Batcher(window=1.0)
    b.add("a", 10, item(1), now=0.0)
    b.add("b", 10, item(2), now=0.5)
    assert b.holds("c/s1")
    assert b.discard("c/s1") and not b.holds("c/s1")
    assert not b.discard("c/s1")
    assert b.due(1.0) == []  # a is empty now, b is 0.5 s old
    assert [c for c, _ in b.due(1.6)] == ["b"]


def test_force():
    b = Batcher(window=100.0)
    b.add("a", 10, item(1), now=0.0)
    assert [c for c, _ in b.due(0.0, force=True)] == ["a"]
