"""Malformed requests to the node: a 4xx with a JSON message, never a 500, never a crash."""

from __future__ import annotations

import io
import json
import socket
import zipfile

import pytest
import requests

from tests.badinput.conftest import MAX_UPLOAD, node_still_answers, tmp_files

pytestmark = pytest.mark.timeout(120)

KEY = "ab" * 32


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


SAMPLE_ZIP = zip_bytes({"data.csv": b"1.0,3.0\n"})
OPENER = b"import substratools as tools\n"


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart body built by hand (so that it can be made wrong on purpose)."""
    boundary = "substraworkerboundary"
    out = b""
    for name, value in fields.items():
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    for name, (filename, data) in files.items():
        out += (
            (
                f"--{boundary}\r\nContent-Disposition: form-data; "
                f'name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def dataset_form(**overrides) -> tuple[bytes, str]:
    fields = {"json": json.dumps({"name": "d", "type": "csv", "permissions": {"public": True}})}
    files = {"data_opener": ("opener.py", OPENER), "description": ("d.md", b"# d\n")}
    fields.update(overrides.pop("fields", {}))
    files.update(overrides.pop("files", {}))
    for name in overrides.pop("drop", ()):
        files.pop(name, None)
        fields.pop(name, None)
    return multipart(fields, files)


def cases(dataset_key: str) -> list[tuple[str, str, str, dict, bytes]]:
    """(name, method, path, headers, body) of every malformed request."""
    json_h = {"Content-Type": "application/json"}
    out = [
        ("not JSON", "POST", "/traintuple/", json_h, b"{not json"),
        ("JSON list", "POST", "/traintuple/", json_h, b"[1, 2]"),
        ("JSON string", "POST", "/compute_plan/", json_h, b'"plan"'),
        ("empty body", "POST", "/traintuple/", json_h, b""),
        ("invalid UTF-8", "POST", "/traintuple/", json_h, b'{"algo_key": "\xff\xfe"}'),
        ("wrong types", "POST", "/traintuple/", json_h, json.dumps({"algo_key": 5}).encode()),
        ("unknown keys", "POST", "/traintuple/", json_h,
         json.dumps({"algo_key": KEY, "data_manager_key": KEY,
                     "train_data_sample_keys": [KEY]}).encode()),
        ("plan with a cycle", "POST", "/compute_plan/", json_h, json.dumps({"traintuples": [
            {"traintuple_id": "a", "algo_key": KEY, "data_manager_key": dataset_key,
             "train_data_sample_keys": [KEY], "in_models_ids": ["b"]},
            {"traintuple_id": "b", "algo_key": KEY, "data_manager_key": dataset_key,
             "train_data_sample_keys": [KEY], "in_models_ids": ["a"]}]}).encode()),
        ("NaN in JSON", "POST", "/traintuple/", json_h, b'{"algo_key": NaN}'),
        ("form instead of multipart", "POST", "/data_manager/",
         {"Content-Type": "application/x-www-form-urlencoded"}, b"json=%7B%7D"),
        ("JSON instead of multipart", "POST", "/algo/", json_h, b"{}"),
        ("multipart without boundary", "POST", "/data_manager/",
         {"Content-Type": "multipart/form-data"}, b"--x\r\n\r\n--x--"),
        ("truncated multipart", "POST", "/data_manager/",
         {"Content-Type": dataset_form()[1]}, dataset_form()[0][:-40]),
        ("multipart garbage", "POST", "/algo/",
         {"Content-Type": "multipart/form-data; boundary=zz"}, b"\x00\x01garbage" * 100),
        ("text/plain sample", "POST", "/data_sample/", {"Content-Type": "text/plain"}, b"hello"),
        ("sample JSON without path", "POST", "/data_sample/", json_h,
         json.dumps({"data_manager_keys": [dataset_key]}).encode()),
        ("sample path not a string", "POST", "/data_sample/", json_h,
         json.dumps({"path": ["/"], "data_manager_keys": [dataset_key]}).encode()),
        ("bulk update without fields", "POST", "/data_sample/bulk_update/",
         {"Content-Type": "application/x-www-form-urlencoded"}, b"data_manager_keys=x"),
        ("link without objective", "POST", f"/data_manager/{dataset_key}/update_ledger/",
         {"Content-Type": "application/x-www-form-urlencoded"}, b""),
        ("short key", "GET", "/algo/abc/", {}, b""),
        ("non-hex key", "GET", "/algo/" + "z" * 64 + "/", {}, b""),
        ("key with dots", "GET", "/algo/" + "." * 64 + "/", {}, b""),
        ("unknown key", "GET", f"/algo/{KEY}/", {}, b""),
        ("unknown file", "GET", f"/algo/{KEY}/file/", {}, b""),
        ("bad search", "GET", "/algo/?search=%zz%%", {}, b""),
        ("bad search group", "GET", "/traintuple/?search=nothing", {}, b""),
        ("bad sort", "GET", f"/objective/{KEY}/leaderboard/?sort=sideways", {}, b""),
        ("bad plan id", "POST", "/compute_plan/xyz/update_ledger/", json_h, b"{}"),
        ("unknown route", "GET", "/nowhere/", {}, b""),
        ("wrong method", "PUT", "/algo/", {}, b""),
        ("wrong method 2", "DELETE", f"/algo/{KEY}/", {}, b""),
    ]  # fmt: skip
    form = dataset_form
    out += [
        ("missing json field", "POST", "/data_manager/", *_h(form(drop=["json"]))),
        ("json field not JSON", "POST", "/data_manager/", *_h(form(fields={"json": "{"}))),
        ("json field a list", "POST", "/data_manager/", *_h(form(fields={"json": "[]"}))),
        ("missing file part", "POST", "/data_manager/", *_h(form(drop=["data_opener"]))),
        ("unexpected file part", "POST", "/data_manager/",
         *_h(form(files={"extra": ("x", b"x")}))),
        ("file part twice", "POST", "/data_manager/", *_h(_twice())),
        ("sample without archive", "POST", "/data_sample/",
         *_h(multipart({"json": json.dumps({"data_manager_keys": [dataset_key]})}, {}))),
        ("sample not an archive", "POST", "/data_sample/",
         *_h(multipart({"json": json.dumps({"data_manager_keys": [dataset_key]})},
                       {"path": ("s.zip", b"not a zip at all")}))),
        ("sample with bad dataset key", "POST", "/data_sample/",
         *_h(multipart({"json": json.dumps({"data_manager_keys": ["nope"]})},
                       {"path": ("s.zip", SAMPLE_ZIP)}))),
        ("sample with unknown dataset", "POST", "/data_sample/",
         *_h(multipart({"json": json.dumps({"data_manager_keys": [KEY]})},
                       {"path": ("s.zip", SAMPLE_ZIP)}))),
        ("test_only not a bool", "POST", "/data_sample/",
         *_h(multipart({"json": json.dumps({"data_manager_keys": [dataset_key],
                                            "test_only": {"x": 1}})},
                       {"path": ("s.zip", SAMPLE_ZIP)}))),
    ]  # fmt: skip
    return out


def _h(body_and_type: tuple[bytes, str]) -> tuple[dict, bytes]:
    body, content_type = body_and_type
    return {"Content-Type": content_type}, body


def _twice() -> tuple[bytes, str]:
    body, content_type = dataset_form()
    extra, _ = multipart({}, {"data_opener": ("again.py", OPENER)})
    # splice a second data_opener part before the closing boundary
    closing = b"--substraworkerboundary--\r\n"
    return body[: -len(closing)] + extra, content_type


def check_refused(response: requests.Response, name: str) -> None:
    assert 400 <= response.status_code < 500, (name, response.status_code, response.text[:300])
    assert response.headers.get("Content-Type", "").startswith("application/json"), name
    message = response.json().get("message")
    assert isinstance(message, str) and message, (name, response.text[:300])


def test_malformed_requests_get_a_json_4xx(small_node, dataset_key, tally):
    statuses = {}
    for name, method, path, headers, body in cases(dataset_key):
        response = requests.request(
            method,
            f"{small_node.url}{path}",
            headers={**small_node.headers, **headers},
            data=body,
            timeout=30,
        )
        check_refused(response, name)
        statuses[name] = response.status_code
        tally.add("node: malformed requests", True)
    assert node_still_answers(small_node)
    assert "unexpected error" not in small_node.log_text()
    assert tmp_files(small_node) == []
    assert statuses["unknown key"] == 404 and statuses["wrong method"] == 405
    assert statuses["short key"] == 400 and statuses["not JSON"] == 400


NESTED = b"[" * 100_000 + b"]" * 100_000  # valid JSON that Python's parser cannot recurse into


@pytest.mark.parametrize("where", ["JSON body", "multipart json field"])
def test_deeply_nested_json_is_a_400(small_node, dataset_key, where, tally):
    if where == "JSON body":
        headers, body = {"Content-Type": "application/json"}, NESTED
        path = "/compute_plan/"
    else:
        headers, body = _h(multipart({"json": NESTED.decode()}, {"path": ("s.zip", SAMPLE_ZIP)}))
        path = "/data_sample/"
    response = requests.post(
        f"{small_node.url}{path}", headers={**small_node.headers, **headers}, data=body, timeout=30
    )
    assert node_still_answers(small_node)
    tally.add("node: deeply nested JSON", response.status_code < 500)
    check_refused(response, where)


def test_bodies_over_the_limit_are_refused_before_they_are_read(small_node, tally):
    big = b"x" * (MAX_UPLOAD + 1)
    # a declared length over the limit
    response = requests.post(
        f"{small_node.url}/algo/",
        headers={**small_node.headers, "Content-Type": "multipart/form-data; boundary=b"},
        data=big,
        timeout=30,
    )
    assert response.status_code == 413
    check_refused(response, "content-length over the limit")
    tally.add("node: huge bodies", True)

    # a chunked body (no length) that grows over the limit
    def chunks():
        for _ in range(MAX_UPLOAD // 65536 + 2):
            yield b"y" * 65536

    try:
        response = requests.post(
            f"{small_node.url}/traintuple/",
            headers={**small_node.headers, "Content-Type": "application/json"},
            data=chunks(),
            timeout=30,
        )
        refused = response.status_code == 413
        check_refused(response, "chunked body over the limit")
    except requests.ConnectionError:
        refused = True  # the server closed the connection on the excess bytes
    assert refused
    tally.add("node: huge bodies", refused)

    # a JSON body right under the limit but not JSON
    response = requests.post(
        f"{small_node.url}/compute_plan/",
        headers={**small_node.headers, "Content-Type": "application/json"},
        data=b"{" + b"x" * (MAX_UPLOAD - 10),
        timeout=30,
    )
    check_refused(response, "big malformed JSON")
    tally.add("node: huge bodies", True)
    assert node_still_answers(small_node)
    assert tmp_files(small_node) == []


RAW = [
    b"GARBAGE\r\n\r\n",
    b"GET /node/ HTTP/9.9\r\nHost: x\r\n\r\n",
    b"POST /traintuple/ HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /traintuple/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /traintuple/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /node/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello
]


@pytest.mark.parametrize("raw", RAW, ids=range(len(RAW)))
def test_broken_http_gets_an_error_or_a_closed_connection_and_the_node_lives(
    small_node, raw, tally
):
    host, port = small_node.url.split("://")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            answer = b""
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:200]
        assert b"application/json" in answer.split(b"\r\n\r\n")[0].lower(), answer[:300]
    tally.add("node: broken HTTP", True)
    assert node_still_answers(small_node)


def test_a_hostile_part_file_name_writes_nothing_outside(small_node, dataset_key, tmp_path):
    target = tmp_path / "evil.zip"
    body, content_type = multipart(
        {"json": json.dumps({"data_manager_keys": [dataset_key]})},
        {"path": (f"../../../../../../..{target}", SAMPLE_ZIP)},
    )
    response = requests.post(
        f"{small_node.url}/data_sample/",
        headers={**small_node.headers, "Content-Type": content_type},
        data=body,
        timeout=30,
    )
    assert response.status_code in (201, 409), response.text
    assert not target.exists()
