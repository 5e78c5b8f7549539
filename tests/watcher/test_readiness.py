"""Fingerprints, content keys, the settle rules and bad folder content."""

from __future__ import annotations

import os

import pytest

from substra_worker.node.keys import data_sample_key
from substra_worker.watcher import readiness as rd


def make(folder, files: dict[str, bytes]):
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def test_sample_key_is_the_node_key(tmp_path):
    folder = make(tmp_path / "s", {"a.csv": b"1,2\n", "sub/b.bin": b"\x00" * 10, "empty": b""})
    files = rd.walk(folder, tmp_path)
    assert [f.rel for f in files] == ["a.csv", "empty", "sub/b.bin"]
    assert rd.sample_key(files) == data_sample_key(folder)


def test_linked_file_inside_root_counts(tmp_path):
    make(tmp_path / "shared", {"x": b"shared content"})
    folder = make(tmp_path / "s", {"a": b"a"})
    os.symlink(tmp_path / "shared" / "x", folder / "x")
    files = rd.walk(folder, tmp_path)
    assert rd.sample_key(files) == data_sample_key(folder)


def test_fingerprint_sees_size_mtime_and_new_files(tmp_path):
    folder = make(tmp_path / "s", {"a": b"1"})
    fp0 = rd.folder_fingerprint(folder, tmp_path)
    assert fp0 == rd.folder_fingerprint(folder, tmp_path)
    (folder / "a").write_bytes(b"12")
    fp1 = rd.folder_fingerprint(folder, tmp_path)
    assert fp1 != fp0 and fp1.size == 2
    os.utime(folder / "a", ns=(1, 1))
    fp2 = rd.folder_fingerprint(folder, tmp_path)
    assert fp2 != fp1
    make(folder, {"deep/er/b": b""})
    fp3 = rd.folder_fingerprint(folder, tmp_path)
    assert fp3.files == 2 and fp3 != fp2
    assert rd.Fingerprint.from_dict(fp3.as_dict()) == fp3


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("outside", "points outside the watch root"),
        ("broken", "is broken"),
        ("fifo", "is not a regular file"),
        ("linked_dir", "points to a folder"),
    ],
)
def test_bad_content(tmp_path, setup, reason):
    root = tmp_path / "root"
    folder = make(root / "s", {"ok": b"x"})
    outside = make(tmp_path / "outside", {"secret": b"s"})
    if setup == "outside":
        os.symlink(outside / "secret", folder / "link")
    elif setup == "broken":
        os.symlink(root / "nothing", folder / "link")
    elif setup == "fifo":
        os.mkfifo(folder / "pipe")
    elif setup == "linked_dir":
        make(root / "other", {"y": b"y"})
        os.symlink(root / "other", folder / "dir")
    with pytest.raises(rd.BadFolder) as info:
        rd.walk(folder, root)
    assert reason in info.value.reason


def test_folder_symlink_outside_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    make(tmp_path / "elsewhere", {"a": b"a"})
    os.symlink(tmp_path / "elsewhere", root / "s")
    with pytest.raises(rd.BadFolder, match="outside the watch root"):
        rd.walk(root / "s", root)


def test_gone(tmp_path):
    with pytest.raises(rd.FolderGone):
        rd.walk(tmp_path / "missing", tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    folder = make(tmp_path / "s", {"a": b"a"})
    os.chmod(folder / "a", 0)
    try:
        with pytest.raises(rd.BadFolder, match="unreadable"):
            rd.walk(folder, tmp_path)
    finally:
        os.chmod(folder / "a", 0o644)


def test_unreadable_while_hashing(tmp_path, monkeypatch):
    # As root no file is unreadable, so the read error is injected at the one seam
    # that opens sample files.
    folder = make(tmp_path / "s", {"a": b"a"})
    files = rd.walk(folder, tmp_path)

    def refuse(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(rd, "open_for_hash", refuse)
    with pytest.raises(rd.BadFolder, match="'a' is unreadable: Permission denied"):
        rd.sample_key(files)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("sample 1", None),
        ("échantillon-été", None),
        ("a\nb", "control characters"),
        ("a\tb", "control characters"),
        ('a"b', "quote or a backslash"),
        ("a\\b", "quote or a backslash"),
        (" lead", "whitespace"),
        ("bad\udcff", "not valid UTF-8"),
        ("x" * 201, "longer than 200"),
    ],
)
def test_names(name, problem):
    found = rd.name_problem(name)
    if problem is None:
        assert found is None
    else:
        assert problem in found
    assert "\n" not in rd.display_name(name)


def test_settle_rules():
    r = rd.Readiness(quiet_period=2.0, max_settle_wait=10.0)
    a = rd.Fingerprint(1, 1, "a")
    b = rd.Fingerprint(1, 2, "b")
    assert r.observe("k", a, 0.0) is rd.Verdict.WAITING
    assert r.observe("k", a, 1.9) is rd.Verdict.WAITING
    assert r.observe("k", b, 1.95) is rd.Verdict.WAITING  # changed: the quiet period restarts
    assert r.next_due("k") == pytest.approx(3.95)
    assert r.observe("k", b, 3.0) is rd.Verdict.WAITING
    assert r.observe("k", b, 4.0) is rd.Verdict.READY
    # unreadable this time (None) counts as a change
    assert r.observe("k", None, 4.5) is rd.Verdict.WAITING
    assert r.observe("k", b, 6.6) is rd.Verdict.WAITING
    assert r.observe("k", b, 8.7) is rd.Verdict.READY


def test_marker_makes_ready_at_once():
    r = rd.Readiness(quiet_period=100.0, max_settle_wait=1000.0)
    fp = rd.Fingerprint(1, 1, "a")
    assert r.observe("k", fp, 0.0) is rd.Verdict.WAITING
    assert r.observe("k", fp, 0.1, marker=True) is rd.Verdict.READY


def test_stalled_once_per_period_then_ready():
    r = rd.Readiness(quiet_period=1.0, max_settle_wait=5.0)
    verdicts = [
        r.observe("k", rd.Fingerprint(1, i, str(i)), float(i) * 0.5) for i in range(25)
    ]  # changes every 0.5 s for 12 s
    assert verdicts.count(rd.Verdict.STALLED) == 2
    assert rd.Verdict.READY not in verdicts
    last = rd.Fingerprint(1, 24, "24")
    assert r.observe("k", last, 13.1) is rd.Verdict.READY


def test_marker_path(tmp_path):
    assert rd.marker_path(tmp_path / "s1", ".ready") == tmp_path / "s1.ready"
    assert rd.marker_path(tmp_path / "s1", "") is None
