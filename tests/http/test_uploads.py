"""Uploads stream to disk, are bounded, and never block the other requests."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import requests

from tests import assets
from tests.http.conftest import ACCEPT, add_dataset
from tests.support.node_process import start_node


def test_a_slow_upload_does_not_block_other_requests(api, files_dir):
    dataset = add_dataset(api, files_dir)
    archive = assets.archive_bytes({"data.csv": b"1,3\n2,5\n"}, "zip")
    boundary = "slowboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="json"\r\n\r\n'
        + json.dumps({"data_manager_keys": [dataset], "test_only": False})
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="path"; filename="s.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    result: dict = {}

    def body():
        yield head
        step = len(archive) // 30 + 1
        for i in range(0, len(archive), step):
            yield archive[i : i + step]
            time.sleep(0.1)  # about 3 seconds for the whole body
        yield tail

    def upload():
        result["response"] = requests.post(
            api.url + "/data_sample/",
            data=body(),  # chunked transfer encoding
            headers={
                **api.headers(),
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
            timeout=60,
        )

    thread = threading.Thread(target=upload)
    thread.start()
    time.sleep(0.3)
    durations = []
    while thread.is_alive() and len(durations) < 5:
        started = time.monotonic()
        assert api.get("/node/").status_code == 200
        durations.append(time.monotonic() - started)
        time.sleep(0.2)
    assert thread.is_alive() or len(durations) >= 3, "the upload finished too fast to test"
    thread.join(60)
    assert max(durations) < 1.0, durations
    assert result["response"].status_code == 201, result["response"].text


def test_uploads_leave_no_spooled_file_behind(api, node, files_dir):
    add_dataset(api, files_dir)
    spool = [p for p in (node.node_dir / "uploads").rglob("*") if p.is_file()]
    assert spool == []


def test_a_refused_archive_leaves_no_file_in_the_store(api, node, tmp_path):
    # an archive whose Dockerfile names no script: refused once extracted
    files = {"Dockerfile": b"FROM python:3.7\n", "algo.py": b"print('never stored')\n"}
    archive = tmp_path / "refused.tar.gz"
    archive.write_bytes(assets.archive_bytes(files, "tar.gz"))
    description = assets.description_path("# a refused algo, never stored\n", tmp_path)
    keys = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (archive, description)]
    assert (node.node_dir / "files").is_dir()  # where the store is
    for server, part in (("algo", "file"), ("composite_algo", "file"), ("objective", "metrics")):
        response = api.create(
            f"/{server}/",
            {"name": "refused", "permissions": {"public": True, "authorized_ids": []}},
            {part: archive, "description": description},
        )
        assert response.status_code == 400, response.text
        assert "ENTRYPOINT" in response.json()["message"]
        for key in keys:
            assert not (node.node_dir / "files" / key[:2] / key).exists(), server
            assert not (node.node_dir / "cache" / key).exists(), server
    spool = [p for p in (node.node_dir / "uploads").rglob("*") if p.is_file()]
    assert spool == []


def test_bodies_over_the_limit_are_413_json(tmp_path, files_dir):
    node = start_node(tmp_path / "state", env={"SUBSTRA_WORKER_MAX_UPLOAD_BYTES": "100000"})
    try:
        headers = {**ACCEPT, "Authorization": f"Token {node.token}"}
        meta = json.dumps({"data_manager_keys": ["ab" * 32], "test_only": False})
        big = b"x" * 200_000
        response = requests.post(
            f"{node.url}/data_sample/",
            data={"json": meta},
            files={"path": ("path", big)},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 413
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["message"]

        # chunked (no Content-Length): refused as well
        response = requests.post(
            f"{node.url}/traintuple/",
            data=iter([b"{" + b" " * 60_000] * 3),
            headers={**headers, "Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 413
        assert response.json()["message"]

        # the node still serves after refusing
        assert requests.get(f"{node.url}/node/", headers=headers, timeout=10).status_code == 200
    finally:
        node.stop()
