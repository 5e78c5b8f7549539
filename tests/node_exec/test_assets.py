"""The shared test assets: reproducible archives, distinct keys, well-formed samples."""

from __future__ import annotations

import hashlib
import tarfile
import zipfile

import pytest

from tests import assets


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", ["tar.gz", "tar", "zip"])
def test_algo_archives_are_reproducible_and_distinct(tmp_path, fmt):
    first = {k: sha(assets.make_algo_archive(k, tmp_path / "a", fmt)) for k in assets.ALGO_KINDS}
    again = {k: sha(assets.make_algo_archive(k, tmp_path / "b", fmt)) for k in assets.ALGO_KINDS}
    assert first == again
    assert len(set(first.values())) == len(assets.ALGO_KINDS)
    other = sha(assets.make_algo_archive("algo", tmp_path / "c", fmt, variant=1))
    assert other not in first.values()
    slow = sha(assets.make_algo_archive("sleeping_algo", tmp_path / "c", fmt, sleep=5))
    assert slow != first["sleeping_algo"]


def test_archive_members(tmp_path):
    archive = assets.make_algo_archive("composite_algo", tmp_path)
    assert archive.name == "composite_algo.tar.gz"
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        dockerfile = tar.extractfile("Dockerfile").read().decode()
    assert set(members) == {"Dockerfile", "composite_algo.py", "linear.py"}
    assert all(m.uid == 0 and m.mtime == members["Dockerfile"].mtime for m in members.values())
    assert 'ENTRYPOINT ["python3", "composite_algo.py"]' in dockerfile
    assert archive.read_bytes()[4:8] == b"\0\0\0\0"  # no gzip timestamp


def test_metrics_archive(tmp_path):
    archive = assets.metrics_archive(tmp_path)
    assert archive.name == "metrics.zip"
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["Dockerfile", "metrics.py"]
        assert b'ENTRYPOINT ["python3", "metrics.py"]' in zf.read("Dockerfile")
    assert sha(archive) == sha(assets.metrics_archive(tmp_path / "again"))
    assert sha(archive) != sha(assets.metrics_archive(tmp_path, variant=2))


def test_failure_message_matches_the_failing_algo():
    source = (assets.SRC / "failing_algo.py").read_text()
    assert f'FAILURE_MESSAGE = "{assets.FAILURE_MESSAGE}"' in source
    assert f'PIDS_FILE = "{assets.PIDS_FILE}"' in (assets.SRC / "sleeping_algo.py").read_text()


def test_opener_and_descriptions(tmp_path):
    opener = assets.opener_path()
    assert opener.name == "opener.py" and "tools.Opener" in opener.read_text()
    variant = assets.opener_path(tmp_path, variant=1)
    assert variant.parent == tmp_path and sha(variant) != sha(opener)
    assert assets.opener_path(tmp_path, variant=1) == variant

    default = assets.description_path()
    assert default.read_text() == assets.DEFAULT_DESCRIPTION
    one = assets.description_path("# one\n", tmp_path)
    two = assets.description_path("# two\n", tmp_path)
    assert one.suffix == ".md" and one.read_text() == "# one\n"
    assert sha(one) != sha(two) and one != two
    assert assets.description_path("# one\n", tmp_path) == one


def test_sample_folders(tmp_path):
    folders = assets.make_sample_folders(tmp_path / "x", 4, rows=6)
    assert [f.name for f in folders] == ["sample0", "sample1", "sample2", "sample3"]
    contents = [(f / assets.SAMPLE_FILE).read_bytes() for f in folders]
    assert len(set(contents)) == 4  # distinct keys
    again = assets.make_sample_folders(tmp_path / "y", 4, rows=6)
    assert contents == [(f / assets.SAMPLE_FILE).read_bytes() for f in again]
    for kwargs in ({"seed": 1}, {"prefix": "s"}, {"test": True}):
        other = assets.make_sample_folders(tmp_path / str(kwargs), 4, rows=6, **kwargs)
        assert not set(contents) & {(f / assets.SAMPLE_FILE).read_bytes() for f in other}
    points = assets.sample_points(folders)
    assert len(points) == 24
    for x, y in points:
        assert abs(y - (assets.SLOPE * x + assets.INTERCEPT)) < 10 * assets.NOISE
