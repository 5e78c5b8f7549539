"""Connection reuse, atomic downloads, and streamed uploads."""

from __future__ import annotations

import os
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from substra_worker.sdk import Client, exceptions

from .conftest import TOKEN, key
from .scripted_server import Reply, ScriptedServer, parse_multipart


def test_n_calls_share_one_connection(client, server, files):
    server.script("GET", "/node/", Reply(200, []))
    server.script("GET", f"/algo/{key('a')}/", Reply(200, {"key": key("a")}))
    server.script("GET", f"/algo/{key('missing')}/", Reply(404, {"message": "nope"}))
    server.script("POST", "/algo/", Reply(409, {"message": "exists", "pkhash": key("a")}))
    algo = {
        "name": "a",
        "description": str(files["description"]),
        "file": str(files["algo"]),
        "permissions": {"public": True, "authorized_ids": []},
    }

    for _ in range(10):
        client.list_node()
        client.get_algo(key("a"))
        with pytest.raises(exceptions.NotFound):
            client.get_algo(key("missing"))
        client.add_algo(algo, exist_ok=True)  # streamed multipart, 409, then GET

    assert len(server.requests) == 50
    assert server.connections == 1


def _download_setup(server: ScriptedServer, reply: Reply) -> None:
    k = key("algo")
    address = f"{server.url}/algo/{k}/file/"
    server.script(
        "GET", f"/algo/{k}/", Reply(200, {"key": k, "content": {"storageAddress": address}})
    )
    server.script("GET", f"/algo/{k}/file/", reply)


def test_a_broken_download_leaves_no_partial_file(client, server, tmp_path):
    _download_setup(server, Reply(200, os.urandom(2_000_000), cut_after=300_000))
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "algo.tar.gz").write_bytes(b"previous download")

    with pytest.raises(exceptions.ConnectionError):
        client.download_algo(key("algo"), destination)

    assert [p.name for p in destination.iterdir()] == ["algo.tar.gz"]
    assert (destination / "algo.tar.gz").read_bytes() == b"previous download"


def test_a_refused_download_leaves_no_file(client, server, tmp_path):
    _download_setup(server, Reply(403, {"message": "not yours"}))
    with pytest.raises(exceptions.AuthorizationError):
        client.download_algo(key("algo"), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_stalled_download_times_out_and_leaves_no_file(server, tmp_path):
    _download_setup(server, Reply(200, b"x" * 2_000_000, stall=(500_000, 1.0)))
    with Client(url=server.url, token=TOKEN) as client:
        client.backend.transport.timeout = 0.3
        with pytest.raises(exceptions.Timeout):
            client.download_algo(key("algo"), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """A temp folder for the upload archives, to check they are cleaned up."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_large_folder_is_streamed_not_held_in_memory(tmp_path, private_tmp):
    # Given a 24 MB sample folder and a node that spools bodies to disk
    sample = tmp_path / "big"
    (sample / "sub").mkdir(parents=True)
    blobs = {
        "a.bin": os.urandom(8 << 20),
        "b.bin": os.urandom(8 << 20),
        "sub/c.bin": os.urandom(8 << 20),
    }
    for name, blob in blobs.items():
        (sample / name).write_bytes(blob)
    del blob
    server = ScriptedServer(spool_dir=tmp_path / "spool").start()
    server.script("POST", "/data_sample/", Reply(201, [{"pkhash": key("big"), "validated": True}]))
    data = {"path": str(sample), "data_manager_keys": [key("dm")], "test_only": False}

    # When it is uploaded
    with Client(url=server.url, token=TOKEN) as client:
        tracemalloc.start()
        try:
            client.add_data_sample(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    server.stop()

    # Then far less than one file was ever held in memory, and all of it arrived
    assert peak < 4 << 20, f"peak Python allocations {peak / 2**20:.1f} MB"
    recorded = server.only()
    body = recorded.body_file.read_bytes()
    (archive_part,) = [
        p for p in parse_multipart(recorded.headers["content-type"], body) if p.name == "path"
    ]
    zip_path = tmp_path / "received.zip"
    zip_path.write_bytes(archive_part.content)
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == sorted(blobs)
        for name, blob in blobs.items():
            assert zf.read(name) == blob
    assert list(private_tmp.rglob("*.zip")) == []  # the temporary archive is gone


def test_archives_are_removed_when_the_upload_fails(client, server, sample_dirs, private_tmp):
    server.script("POST", "/data_sample/", Reply(400, {"message": "bad"}))
    data = {"paths": [str(d) for d in sample_dirs], "data_manager_keys": [key("dm")]}
    with pytest.raises(exceptions.InvalidRequest):
        client.add_data_samples(data)
    assert len(server.requests) == 1
    assert list(private_tmp.rglob("*.zip")) == []
