"""The watcher's records and claims in a real Redis."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from substra_worker.watcher.state import (
    ChannelRecord,
    FolderRecord,
    FolderStatus,
    WatchState,
)

DATASET = "d" * 64


def test_records_serialise_as_before(tmp_path):
    """The cheap JSON of a record is the one ``dataclasses.asdict`` gave."""
    rec = FolderRecord(key="c/s", channel="c", name="s", path=str(tmp_path / "c" / "s"))
    rec.set(FolderStatus.WAITING, "waiting for the folder to settle", now=1.0)
    rec.set(FolderStatus.FAILED, "boom", now=2.0)
    rec.fingerprint = {"files": 1, "size": 3, "digest": "ab"}
    rec.previous.append({"sample_key": "k", "changed_at": 3.0})
    rec.dataset_keys = [DATASET]
    assert rec.to_json() == json.dumps(asdict(rec), sort_keys=True)
    assert FolderRecord.from_json(rec.to_json()) == rec
    crec = ChannelRecord("c", ok=True, dataset_keys=[DATASET], dataset_attempt=2)
    assert crec.to_json() == json.dumps(asdict(crec), sort_keys=True)
    assert ChannelRecord.from_json(crec.to_json()) == crec
    # a field written by a newer version is ignored
    data = json.loads(rec.to_json()) | {"from_the_future": 1}
    assert FolderRecord.from_json(json.dumps(data)) == rec


def test_claims_read_at_once_then_kept_up_to_date(tmp_path, redis_client, monkeypatch):
    state = WatchState(redis_client, tmp_path)
    state.set_claims(DATASET, {"h1": {"folder": "c/a", "status": "queued"}})
    state.read_claims(DATASET, ["h1", "h2", "h3", "h1"])

    def no_round_trip(*args, **kwargs):
        raise AssertionError("claim() read Redis again")

    monkeypatch.setattr(redis_client, "hget", no_round_trip)
    assert state.claim(DATASET, "h1")["folder"] == "c/a"
    assert state.claim(DATASET, "h2") is None
    # this watcher's own writes are seen at once
    state.set_claims(DATASET, {"h2": {"folder": "c/b", "status": "submitting"}})
    assert state.claim(DATASET, "h2") == {
        "folder": "c/b",
        "status": "submitting",
        "root": state.root_id,
    }
    state.drop_claim(DATASET, "h1")
    assert state.claim(DATASET, "h1") is None
    # once forgotten, claims are read from Redis again
    state.forget_read_claims()
    with pytest.raises(AssertionError, match="read Redis again"):
        state.claim(DATASET, "h3")
    monkeypatch.undo()
    assert state.claim(DATASET, "h2")["folder"] == "c/b"
    assert state.claim(DATASET, "h1") is None
