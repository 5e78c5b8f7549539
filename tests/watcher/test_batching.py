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


def test_full_batches_taken_one_channel_at_a_time():
    b = Batcher(window=1.0)
    for i in range(5):
        b.add("a", 2, item(i), now=0.0)
    b.add("b", 2, item(9), now=0.0)
    assert b.full("a") and not b.full("b") and not b.full("nope")
    taken = b.take_full("a", now=0.5)
    assert [[i.key for i in items] for items in taken] == [["c/s0", "c/s1"], ["c/s2", "c/s3"]]
    # what is left stays open, and its age starts again with the take
    assert not b.full("a") and b.holds("c/s4") and not b.holds("c/s0")
    assert b.next_due() == 1.0  # b, opened at 0.0; a reopened at 0.5
    assert b.take_full("b", now=0.5) == [] and b.holds("c/s9")
    assert len(b) == 2


def test_index_follows_adds_discards_and_sends():
    b = Batcher(window=1.0)
    b.add("a", 3, item(1), now=0.0)
    b.add("a", 3, item(2), now=0.0)
    assert b.discard("c/s1") and not b.holds("c/s1") and b.holds("c/s2")
    b.add("a", 3, item(1), now=0.0)  # back in, at the end
    ((_, items),) = b.due(2.0)
    assert [i.key for i in items] == ["c/s2", "c/s1"]
    assert not b.holds("c/s1") and not b.holds("c/s2") and len(b) == 0
