"""Hostile archives uploaded raw over HTTP, as a data sample and as an algo: refused.

Path traversal, absolute paths, symbolic and hard links out of the folder,
special files, duplicate members, and bombs (a zip declaring far more than it
holds, a zip whose members hold more than they declare, a tar.bz2 expanding
a thousand-fold and more) are answered 400 with the reason; nothing is
registered and nothing is written outside the node's temporary folders.
"""

from __future__ import annotations

import bz2
import io
import json
import stat
import struct
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path

import pytest
import requests

from substra_worker import Client
from tests.assets import algo_files
from tests.badinput.conftest import node_still_answers, tmp_files

pytestmark = pytest.mark.timeout(120)

ESCAPE = "substra-worker-escaped.csv"  # the file name every escape attempt tries to write


def tar_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tf.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def zip_bytes(members: list[tuple[str, bytes] | zipfile.ZipInfo], payload: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # duplicate names are the point of one case
        for member in members:
            if isinstance(member, zipfile.ZipInfo):
                zf.writestr(member, payload)
            else:
                zf.writestr(*member)
    return buf.getvalue()


def zip_symlink(name: str, target: str) -> bytes:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zip_bytes([("data.csv", b"1,2\n"), info], target.encode())


def zip_declaring_too_much() -> bytes:
    """One 10 MB member of zeros (10 KB deflated) listed 400 times in the central directory:
    about 4 GB declared in about 40 KB."""
    data = zlib.compress(b"\0" * 10_000_000, 9)[2:-4]  # raw deflate
    crc = zlib.crc32(b"\0" * 10_000_000)
    size = 10_000_000
    local = (
        struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), size, 2, 0)
        + b"z0"
        + data
    )
    central = b""
    count = 400
    for i in range(count):
        name = f"z{i}".encode()
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data), size,
            len(name), 0, 0, 0, 0, 0, 0,
        ) + name  # fmt: skip
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), len(local), 0)
    return local + central + end


def zip_holding_more_than_declared() -> bytes:
    """A member declaring 100 bytes whose deflated data (and checksum) are those of 50 MB.

    A zip reader stops at the declared size, so at most 100 bytes are written, and the
    checksum then tells the lie."""
    zeros = b"\0" * 50_000_000
    raw = zlib.compress(zeros, 9)[2:-4]
    crc = zlib.crc32(zeros)
    name = b"data.csv"
    local = (
        struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(raw), 100, len(name), 0)
        + name
        + raw
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(raw), 100,
        len(name), 0, 0, 0, 0, 0, 0,
    ) + name  # fmt: skip
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local), 0)
    return local + central + end


def tar_bz2_bomb(gigabytes: int = 1) -> bytes:
    """A tar.bz2 of one member of ``gigabytes`` GB of zeros, a few tens of KB: bz2
    streams concatenate, so the same compressed megabyte is repeated."""
    size = gigabytes * 1024**3
    header = tarfile.TarInfo("zeros.bin")
    header.size = size
    head = header.tobuf(format=tarfile.USTAR_FORMAT)
    mega = bz2.compress(b"\0" * 1024**2, 9)
    tail = bz2.compress(b"\0" * (2 * 512), 9)  # end-of-archive blocks
    return bz2.compress(head, 9) + mega * (size // 1024**2) + tail


def sample_archives() -> dict[str, tuple[str, bytes]]:
    """Name -> (file name sent, archive bytes) of every hostile archive."""
    ok = ("data.csv", b"1.0,3.0\n")
    return {
        "tar ../ member": ("s.tar", tar_bytes([ok, (f"../{ESCAPE}", b"x")])),
        "tar deep ../": ("s.tar", tar_bytes([ok, (f"a/b/../../../../{ESCAPE}", b"x")])),
        "tar absolute member": ("s.tar", tar_bytes([ok, (f"/tmp/{ESCAPE}", b"x")])),
        "tar symlink out": ("s.tar", tar_bytes([ok, special("link", tarfile.SYMTYPE, "/etc")])),
        "tar symlink then write": (
            "s.tar",
            tar_bytes([special("up", tarfile.SYMTYPE, ".."), (f"up/{ESCAPE}", b"x")]),
        ),
        "tar hardlink out": (
            "s.tar",
            tar_bytes([ok, special("hard", tarfile.LNKTYPE, "/etc/passwd")]),
        ),
        "tar fifo": ("s.tar", tar_bytes([ok, special("fifo", tarfile.FIFOTYPE)])),
        "tar char device": ("s.tar", tar_bytes([ok, special("dev", tarfile.CHRTYPE)])),
        "tar duplicate member": ("s.tar", tar_bytes([ok, ok])),
        "tar.gz ../ member": ("s.tar.gz", tar_bytes([ok, (f"../{ESCAPE}", b"x")], "w:gz")),
        "zip ../ member": ("s.zip", zip_bytes([ok, (f"../{ESCAPE}", b"x")])),
        "zip absolute member": ("s.zip", zip_bytes([ok, (f"/tmp/{ESCAPE}", b"x")])),
        "zip backslash ..": ("s.zip", zip_bytes([ok, (f"..\\..\\{ESCAPE}", b"x")])),
        "zip drive letter": ("s.zip", zip_bytes([ok, (f"C:\\{ESCAPE}", b"x")])),
        "zip symlink out": ("s.zip", zip_symlink("link", "/etc/passwd")),
        "zip duplicate member": ("s.zip", zip_bytes([ok, ok])),
        "zip bomb: declares 4 GB in 40 KB": ("s.zip", zip_declaring_too_much()),
        "zip bomb: holds more than declared": ("s.zip", zip_holding_more_than_declared()),
        "tar.bz2 bomb: 1 GB of zeros": ("s.tar.bz2", tar_bz2_bomb(1)),
        "not an archive": ("s.zip", b"PK\x03\x04 this is not a zip"),
        "empty file": ("s.zip", b""),
    }


def upload_sample(node, dataset_key: str, filename: str, data: bytes) -> requests.Response:
    return requests.post(
        f"{node.url}/data_sample/",
        headers=node.headers,
        data={"json": json.dumps({"data_manager_keys": [dataset_key]})},
        files={"path": (filename, data)},
        timeout=60,
    )


def upload_algo(node, filename: str, data: bytes) -> requests.Response:
    body = {"name": "hostile", "permissions": {"public": True, "authorized_ids": []}}
    return requests.post(
        f"{node.url}/algo/",
        headers=node.headers,
        data={"json": json.dumps(body)},
        files={"file": (filename, data), "description": ("d.md", b"# hostile\n")},
        timeout=60,
    )


ARCHIVES = sample_archives()


def escaped_anywhere(node) -> list:
    base = node.state_dir.parent
    found = list(base.rglob(ESCAPE))
    for where in ("/tmp", "/etc"):
        candidate = Path(where) / ESCAPE
        if candidate.exists():
            found.append(candidate)
    return found


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_hostile_archives_are_refused_as_data_samples_and_as_algos(
    small_node, dataset_key, name, tally
):
    filename, data = ARCHIVES[name]
    client = Client(url=small_node.url, token=small_node.token)
    samples_before = len(client.list_data_sample())
    algos_before = len(client.list_algo())
    for what, response in (
        ("sample", upload_sample(small_node, dataset_key, filename, data)),
        ("algo", upload_algo(small_node, filename, data)),
    ):
        refused = response.status_code == 400
        tally.add(f"archives: {what}", refused)
        assert refused, (name, what, response.status_code, response.text[:300])
        message = response.json()["message"]
        assert "refused" in message or "corrupt" in message or "not a zip or tar" in message, (
            name,
            message,
        )
    assert len(client.list_data_sample()) == samples_before
    assert len(client.list_algo()) == algos_before
    assert escaped_anywhere(small_node) == []
    assert tmp_files(small_node) == []
    assert node_still_answers(small_node)


def test_a_well_formed_algo_archive_still_goes_through(small_node, tmp_path):
    """The refusals above are not a node refusing everything."""
    files = algo_files("algo", variant=31337)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    response = upload_algo(small_node, "algo.tar.gz", buf.getvalue())
    assert response.status_code == 201, response.text
