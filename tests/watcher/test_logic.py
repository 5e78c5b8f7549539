"""The watcher's decisions, step by step, on a fake clock with an in-memory queue.

The state lives in a real Redis; only the queue is faked (fakes.FakeSubmitter),
so each test can decide when jobs run and how they end. The end-to-end tests
(test_end_to_end.py) run the same code against the real queue and node.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from substra_worker.settings import Settings
from substra_worker.watcher import readiness as rd
from substra_worker.watcher.service import Watcher
from substra_worker.watcher.state import WatchState
from substra_worker.watcher.submit import JobGateway
from tests.watcher.fakes import FakeSubmitter

DATASET = "d" * 64


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Harness:
    def __init__(self, root, redis_client, **settings):
        self.root = root
        self.redis = redis_client
        self.clock = Clock()
        self.fake = FakeSubmitter(root)
        defaults = dict(
            quiet_period=1.0,
            max_settle_wait=30.0,
            rescan_interval=5.0,
            batch_window=0.5,
            batch_size=4,
        )
        defaults.update(settings)
        self.settings = Settings(**defaults)
        self.archive_to = None
        self.watcher = self.new_watcher()

    def new_watcher(self, **kwargs) -> Watcher:
        self.watcher = Watcher(
            self.root,
            gateway=JobGateway(self.fake),
            state=WatchState(self.redis, self.root),
            settings=self.settings,
            clock=self.clock,
            archive_to=kwargs.get("archive_to", self.archive_to),
        )
        self.watcher.start(observe=False)
        return self.watcher

    def rounds(self, n: int = 1, dt: float = 0.3, run_jobs: bool = True) -> None:
        for _ in range(n):
            self.clock.advance(dt)
            self.watcher.rescan()  # no observer here: every step looks at everything
            self.watcher.step()
            if run_jobs:
                self.fake.run()

    def settle(self, limit: int = 100) -> None:
        for _ in range(limit):
            self.rounds()
            if self.watcher.idle():
                self.rounds(2)
                if self.watcher.idle():
                    return
        raise AssertionError("the watcher did not settle")

    def records(self) -> dict:
        return {r.key: r for r in WatchState(self.redis, self.root).folders()}

    def status(self) -> dict[str, str]:
        return {k: r.status for k, r in self.records().items()}


def channel(root, name="c", **config):
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    config = config or {"dataset_key": DATASET}
    (path / "channel.json").write_text(json.dumps(config))
    return path


def sample(parent, name, content: str | None = None):
    folder = parent / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.csv").write_text(content if content is not None else f"{name}\n")
    return folder


@pytest.fixture
def h(tmp_path, redis_client):
    root = tmp_path / "root"
    root.mkdir()
    return Harness(root, redis_client)


def test_folders_become_batched_samples(h):
    c = channel(h.root)
    for i in range(10):
        sample(c, f"s{i}")
    h.settle()
    assert set(h.status().values()) == {"registered"}
    assert len(h.fake.samples) == 10
    batches = h.fake.of("add_data_samples")
    assert sorted(len(j.data["paths"]) for j in batches) == [2, 4, 4]
    assert all(j.options["local"] is True for j in batches)
    assert all(j.data["data_manager_keys"] == [DATASET] for j in batches)
    rec = h.records()["c/s3"]
    assert rec.sample_key == rd.sample_key(rd.walk(c / "s3", h.root))
    assert rec.job_id and rec.registered_at and rec.submitted_at and rec.ready_at


def test_quiet_period_waits_for_writes(h):
    c = channel(h.root)
    folder = sample(c, "slow")
    for i in range(5):
        h.rounds(run_jobs=False, dt=0.5)  # a write every 0.5 s: never quiet for 1 s
        (folder / f"part{i}").write_text("x" * i)
        assert h.fake.jobs == {}
    h.settle()
    assert h.status() == {"c/slow": "registered"}
    (job,) = h.fake.jobs.values()
    assert job.operation == "add_data_samples" and len(job.data["paths"]) == 1


def test_marker_next_to_the_folder(h):
    h.settings = h.settings.replace(quiet_period=1000.0)
    w = h.new_watcher()
    c = channel(h.root)
    sample(c, "m")
    h.rounds(3)
    assert h.fake.jobs == {}
    (c / "m.ready").write_text("")
    h.settle()
    assert h.status() == {"c/m": "registered"}
    # the marker is not part of the sample and is not a stray file
    assert "c/m.ready" not in h.records()
    assert w.records["c/m"].sample_key == rd.sample_key(rd.walk(c / "m", h.root))
    # changed afterwards: the old marker does not make it ready, a new one does
    (c / "m" / "more.csv").write_text("more\n")
    os.utime(c / "m.ready", ns=(1, 1))
    h.rounds(5)
    assert len(h.fake.jobs) == 1
    (c / "m.ready").write_text("")
    h.settle()
    assert len(h.fake.jobs) == 2
    assert h.records()["c/m"].previous


def test_restart_and_redrop_register_nothing_new(h):
    c = channel(h.root)
    for i in range(6):
        sample(c, f"s{i}")
    h.settle()
    jobs = len(h.fake.jobs)
    h.watcher.close()
    h.new_watcher()
    h.settle()
    assert len(h.fake.jobs) == jobs
    # the same content dropped again under new names, and under the old name
    shutil.copytree(c / "s1", c / "copy-of-s1")
    shutil.rmtree(c / "s2")
    sample(c, "s2", "s2\n")
    h.settle()
    assert len(h.fake.jobs) == jobs
    recs = h.records()
    assert recs["c/copy-of-s1"].status == "duplicate"
    assert recs["c/copy-of-s1"].duplicate_of == "c/s1"
    assert recs["c/s2"].status == "registered"


def test_two_copies_in_one_batch(h):
    c = channel(h.root)
    sample(c, "a", "same\n")
    sample(c, "b", "same\n")
    h.settle()
    statuses = sorted(h.status().values())
    assert statuses == ["duplicate", "registered"]
    assert len(h.fake.samples) == 1


def test_stopped_between_claim_and_submit(h, monkeypatch):
    c = channel(h.root)
    for i in range(3):
        sample(c, f"s{i}")

    # the first watcher dies right after recording its intent, before the job exists
    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(h.fake, "submit", die)
    with pytest.raises(KeyboardInterrupt):
        h.settle()
    assert set(h.status().values()) == {"submitting"}
    monkeypatch.undo()
    h.new_watcher()
    h.settle()
    assert set(h.status().values()) == {"registered"}
    assert len(h.fake.of("add_data_samples")) == 1


def test_restart_while_queued_keeps_the_job(h):
    c = channel(h.root)
    for i in range(3):
        sample(c, f"s{i}")
    for _ in range(10):
        h.rounds(run_jobs=False)
    assert set(h.status().values()) == {"queued"}
    h.watcher.close()
    h.new_watcher()
    h.settle()
    assert set(h.status().values()) == {"registered"}
    assert len(h.fake.jobs) == 1


def test_failed_batch_is_split_and_existing_samples_are_linked(h):
    c = channel(h.root)
    for i in range(3):
        sample(c, f"s{i}")
    # s1's content is already on the node, under another dataset
    other = "e" * 64
    h.fake.samples[rd.sample_key(rd.walk(c / "s1", h.root))] = {other}
    h.settle()
    assert set(h.status().values()) == {"registered"}
    (batch,) = h.fake.of("add_data_samples")
    assert batch.state.value == "failed"
    singles = h.fake.of("add_data_sample")
    assert len(singles) == 3 and all(j.options["exist_ok"] for j in singles)
    assert len(h.fake.of("link_dataset_with_data_samples")) == 3
    assert all(DATASET in datasets for datasets in h.fake.samples.values())
    assert h.fake.samples[rd.sample_key(rd.walk(c / "s1", h.root))] == {other, DATASET}
    assert h.records()["c/s1"].failures[0]["reason"].startswith("AlreadyExists")


def test_failure_recorded_then_retried_later(h):
    c = channel(h.root)
    sample(c, "s")
    h.fake.fail("add_data_samples", "node exploded")
    h.fake.fail("add_data_sample", "node exploded again")
    h.settle()
    rec = h.records()["c/s"]
    assert rec.status == "failed"
    assert rec.reason == "InternalServerError: node exploded again"
    assert [f["reason"] for f in rec.failures] == [
        "InternalServerError: node exploded",
        "InternalServerError: node exploded again",
    ]
    assert rec.failures[-1]["job_id"] == rec.job_id
    # nothing until the backoff (rescan_interval * 2**attempt) has passed
    h.rounds(5)
    assert h.records()["c/s"].status == "failed"
    h.clock.advance(h.settings.rescan_interval * 2 + 1)
    h.settle()
    rec = h.records()["c/s"]
    assert rec.status == "registered" and rec.attempt == 2
    assert len(h.fake.of("add_data_sample")) == 2


def test_changed_after_registration_is_a_new_sample(h):
    c = channel(h.root)
    folder = sample(c, "s", "v1\n")
    h.settle()
    first = h.records()["c/s"].sample_key
    (folder / "data.csv").write_text("v2, longer\n")
    h.settle()
    rec = h.records()["c/s"]
    assert rec.status == "registered"
    assert rec.sample_key != first
    assert rec.previous[0]["sample_key"] == first
    assert any("changed after registration" in (e["reason"] or "") for e in rec.events)
    assert len(h.fake.samples) == 2


def test_touched_but_same_content_is_not_resent(h):
    c = channel(h.root)
    folder = sample(c, "s")
    h.settle()
    os.utime(folder / "data.csv", ns=(5, 5))
    h.settle()
    assert len(h.fake.jobs) == 1
    assert h.records()["c/s"].status == "registered"


def test_bad_inputs_have_reasons(h, tmp_path):
    c = channel(h.root)
    (c / "empty").mkdir()
    (c / "stray.txt").write_text("x")
    (h.root / "file-at-root").write_text("x")
    (h.root / "no-config").mkdir()
    sample(h.root / "no-config", "x")
    outside = sample(tmp_path, "outside")
    bad = sample(c, "bad-link")
    os.symlink(outside / "data.csv", bad / "link")
    fifo = sample(c, "fifo")
    os.mkfifo(fifo / "pipe")
    sample(c, "odd\nname")
    sample(c, "not-utf8-\udcff", "x\n")  # the name is the bytes b"not-utf8-\xff" on disk
    sample(c, "fine")
    (h.root / "bad-json").mkdir()
    (h.root / "bad-json" / "channel.json").write_text("{")
    h.settle()
    recs = h.records()
    assert recs["c/fine"].status == "registered"
    reasons = {k: (r.status, r.reason) for k, r in recs.items()}
    assert reasons["c/empty"] == ("rejected", "empty folder: no file to register")
    assert reasons["c/stray.txt"][1].startswith("stray file at channel level")
    assert "outside the watch root" in reasons["c/bad-link"][1]
    assert "not a regular file" in reasons["c/fifo"][1]
    assert "control characters" in reasons["c/odd\nname"][1]
    assert reasons["c/not-utf8-\udcff"] == ("rejected", "folder name is not valid UTF-8")
    channels = {r.name: r for r in h.watcher.state.channels()}
    assert "file-at-root" not in channels  # files at the root are ignored
    assert "no channel.json" in channels["no-config"].reason
    assert "not valid JSON" in channels["bad-json"].reason
    assert channels["c"].ok
    # fixing the inputs lets them through
    (c / "empty" / "now").write_text("content")
    (h.root / "no-config" / "channel.json").write_text(json.dumps({"dataset_key": DATASET}))
    (c / "stray.txt").unlink()
    h.settle()
    recs = h.records()
    assert recs["c/empty"].status == "registered"
    assert recs["no-config/x"].status == "registered"
    assert "c/stray.txt" not in recs


def test_deleted_before_it_settled(h):
    c = channel(h.root)
    folder = sample(c, "brief")
    h.rounds(run_jobs=False, dt=0.1)
    assert h.status() == {"c/brief": "waiting"}
    shutil.rmtree(folder)
    h.settle()
    rec = h.records()["c/brief"]
    assert (rec.status, rec.reason) == (
        "vanished",
        "deleted or moved away before it was registered",
    )
    assert h.fake.jobs == {}


def test_stalled_then_registered(h):
    h.settings = h.settings.replace(max_settle_wait=3.0)
    h.new_watcher()
    c = channel(h.root)
    folder = sample(c, "busy")
    for i in range(14):
        (folder / "grow").write_text("x" * i)
        h.rounds(dt=0.3)
    rec = h.records()["c/busy"]
    assert rec.status == "stalled" and "still changing after" in rec.reason
    h.settle()
    assert h.records()["c/busy"].status == "registered"


def test_channel_registers_its_dataset_first(h):
    c = h.root / "own"
    c.mkdir()
    (c / "opener.py").write_text("# opener\n")
    (c / "description.md").write_text("# dataset\n")
    channel(
        h.root,
        "own",
        dataset={
            "name": "mine",
            "type": "csv",
            "data_opener": "opener.py",
            "description": "description.md",
        },
        test_only=True,
        mode="server_path",
    )
    for i in range(3):
        sample(c, f"s{i}")
    h.rounds(10, run_jobs=False)
    (dataset_job,) = h.fake.of("add_dataset")
    (batch,) = h.fake.of("add_data_samples")
    # submitted before the dataset exists: the batch refers to the dataset job
    assert batch.data["data_manager_keys"] == [f"$job:{dataset_job.id}"]
    assert batch.options["local"] is False and batch.data["test_only"] is True
    h.settle()
    assert set(h.status().values()) == {"registered"}
    assert h.watcher.state.channel("own").ok
    key = h.watcher.channels["own"].dataset_key
    assert all(ds == {key} for ds in h.fake.samples.values())


def test_archive_to_moves_registered_folders(h, tmp_path):
    archive = tmp_path / "archive"
    h.new_watcher(archive_to=archive)
    c = channel(h.root)
    sample(c, "s1")
    (c / "s1.ready").write_text("")
    h.settle()
    assert not (c / "s1").exists() and not (c / "s1.ready").exists()
    assert (archive / "c" / "s1" / "data.csv").is_file()
    assert (archive / "c" / "s1.ready").is_file()
    rec = h.records()["c/s1"]
    assert rec.status == "registered" and rec.archived_to == str(archive / "c" / "s1")
    # dropped again: recognised, archived again under another name, nothing sent
    sample(c, "s1")
    h.settle()
    assert len(h.fake.jobs) == 1
    assert (archive / "c" / "s1.1" / "data.csv").is_file()


def test_archive_inside_the_root_is_refused(h):
    with pytest.raises(ValueError, match="outside the watch root"):
        h.new_watcher(archive_to=h.root / "done")
    h.new_watcher(archive_to=h.root / ".done")  # hidden: never watched


def own_channel(root, name="own"):
    c = root / name
    c.mkdir()
    (c / "opener.py").write_text("# opener\n")
    (c / "description.md").write_text("# dataset\n")
    channel(
        root,
        name,
        dataset={
            "name": "mine",
            "type": "csv",
            "data_opener": "opener.py",
            "description": "description.md",
        },
    )
    return c


def test_failed_dataset_holds_the_folders_then_is_retried(h):
    c = own_channel(h.root)
    h.fake.fail("add_dataset", "opener rejected")
    sample(c, "s0")
    for _ in range(15):
        h.rounds(dt=0.3)
    crec = h.watcher.state.channel("own")
    assert crec.reason == "dataset registration failed: InternalServerError: opener rejected"
    assert not crec.dataset_registered
    assert h.status() == {"own/s0": "waiting"}
    assert "dataset" in h.records()["own/s0"].reason
    assert h.fake.of("add_data_samples") == []  # nothing sent that would fail with it
    # submitted again after the backoff: then everything goes through
    h.clock.advance(h.settings.rescan_interval * 2 + 1)
    h.settle()
    crec = h.watcher.state.channel("own")
    assert crec.dataset_registered and crec.reason is None
    assert len(h.fake.of("add_dataset")) == 2
    assert h.status() == {"own/s0": "registered"}
    (batch,) = h.fake.of("add_data_samples")
    second = h.fake.of("add_dataset")[1]
    assert batch.data["data_manager_keys"] == [f"$job:{second.id}"]


def test_restart_does_not_register_the_dataset_again(h):
    c = own_channel(h.root)
    sample(c, "s0")
    h.settle()
    h.watcher.close()
    h.new_watcher()
    sample(c, "s1")
    h.settle()
    assert len(h.fake.of("add_dataset")) == 1
    assert set(h.status().values()) == {"registered"}


def test_records_of_folders_long_gone_are_pruned(h):
    c = channel(h.root)
    sample(c, "kept")
    gone = sample(c, "gone")
    h.settle()
    shutil.rmtree(gone)
    h.settle()
    assert set(h.records()) == {"c/kept", "c/gone"}
    h.watcher.wallclock = lambda: time.time() + h.settings.result_ttl + 10
    h.watcher.rescan()
    assert set(h.records()) == {"c/kept"}  # the folder on disk keeps its record


def count_walks(monkeypatch) -> list[str]:
    """The names of the folders the watcher walks (reads), in order."""
    walked: list[str] = []
    real_walk = rd.walk

    def walk(folder, root, **kwargs):
        walked.append(folder.name)
        return real_walk(folder, root, **kwargs)

    monkeypatch.setattr(rd, "walk", walk)
    return walked


def test_a_full_batch_is_sent_before_the_pass_ends(h, monkeypatch):
    c = channel(h.root)
    for i in range(12):
        sample(c, f"s{i:02d}")
        (c / f"s{i:02d}.ready").write_text("")
    walked = count_walks(monkeypatch)
    looked_at_submit = []
    real_submit = h.fake.submit

    def submit(operation, data, **options):
        looked_at_submit.append(len(set(walked)))
        return real_submit(operation, data, **options)

    monkeypatch.setattr(h.fake, "submit", submit)
    h.watcher.rescan()  # one pass over the 12 folders, marked ready
    batches = h.fake.of("add_data_samples")
    assert [len(j.data["paths"]) for j in batches] == [4, 4, 4]
    # each batch left as soon as it was full, not once every folder had been looked at
    assert looked_at_submit == [4, 8, 12]
    assert {r.status for r in h.watcher.records.values()} == {"queued"}


def test_a_copy_of_a_folder_sent_earlier_in_the_pass_is_a_duplicate(h):
    h.settings = h.settings.replace(batch_size=2)
    h.new_watcher()
    c = channel(h.root)
    for name, content in (("a", "same\n"), ("b", "b\n"), ("c", "same\n")):
        sample(c, name, content)
        (c / f"{name}.ready").write_text("")
    h.watcher.rescan()
    recs = h.watcher.records
    assert {k: r.status for k, r in recs.items()} == {
        "c/a": "queued",
        "c/b": "queued",
        "c/c": "duplicate",
    }
    assert recs["c/c"].duplicate_of == "c/a"
    h.settle()
    assert len(h.fake.samples) == 2


def test_events_naming_entries_do_not_rescan_the_channel(h, monkeypatch):
    c = channel(h.root)
    for i in range(5):
        sample(c, f"s{i}")
    h.settle()
    h.watcher._next_rescan = h.clock() + 1000  # no periodic rescan in this test
    walked = count_walks(monkeypatch)
    sample(c, "new")
    (c / "new.ready").write_text("")
    # what the observer reports for a folder renamed in and marked: the channel folder
    # changed, and its entries
    for entry in (None, "new", "new.ready"):
        h.watcher._on_event("c", entry)
    h.watcher.step()
    assert set(walked) == {"new"}
    # an event on the channel folder alone (its permissions...) still has it scanned whole
    walked.clear()
    h.watcher._on_event("c", None)
    h.watcher.step()
    assert set(walked) == {"s0", "s1", "s2", "s3", "s4", "new"}
    # a changed channel.json has it scanned whole too
    walked.clear()
    for entry in ("channel.json", "s1"):
        h.watcher._on_event("c", entry)
    h.watcher.step()
    assert set(walked) == {"s0", "s1", "s2", "s3", "s4", "new"}
