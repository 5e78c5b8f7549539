"""Malicious and broken archives are refused at upload time; good ones are accepted."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from substra_worker import Client
from substra_worker.node import keys
from substra_worker.node.errors import BadRequest, Conflict, Forbidden
from substra_worker.node.extract import Limits, safe_extract
from substra_worker.node.node import Node
from substra_worker.sdk import exceptions
from tests import assets
from tests.node.conftest import PUBLIC


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def _zip_symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def malicious(tmp: Path) -> dict[str, Path]:
    ok = b"print('hello')\n"
    return {
        "dot-dot": _tar(tmp / "dotdot.tar", [(_file("../evil.py"), ok)]),
        "dot-dot inside": _tar(tmp / "inside.tar.gz", [(_file("a/../../evil.py"), ok)], "w:gz"),
        "absolute": _tar(tmp / "abs.tar", [(_file("/tmp/evil.py"), ok)]),
        "symlink": _tar(
            tmp / "sym.tar", [(_special("link", tarfile.SYMTYPE, "/etc/passwd"), None)]
        ),
        "hardlink": _tar(
            tmp / "hard.tar",
            [(_file("a.py"), ok), (_special("b.py", tarfile.LNKTYPE, "a.py"), None)],
        ),
        "device": _tar(tmp / "dev.tar", [(_special("null", tarfile.CHRTYPE), None)]),
        "fifo": _tar(tmp / "fifo.tar", [(_special("pipe", tarfile.FIFOTYPE), None)]),
        "zip dot-dot": _zip(tmp / "dotdot.zip", [("../../evil.py", ok)]),
        "zip absolute": _zip(tmp / "abs.zip", [("/evil.py", ok)]),
        "zip windows": _zip(tmp / "win.zip", [("..\\evil.py", ok)]),
        "zip symlink": _zip(tmp / "sym.zip", [(_zip_symlink("link"), b"/etc/passwd")]),
        "not an archive": _write(tmp / "plain.tar.gz", b"just some text, not an archive\n" * 10),
        "corrupt gzip": _write(
            tmp / "corrupt.tar.gz", gzip.compress(b"x" * 2048)[:40] + b"\x00garbage" * 10
        ),
        "truncated": _write(
            tmp / "truncated.tar.gz",
            assets.archive_bytes({"a": bytes(range(256)) * 400}, "tar.gz")[:-100],
        ),
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


WHY = {
    "dot-dot": "'..' component",
    "dot-dot inside": "'..' component",
    "absolute": "absolute path",
    "symlink": "is a link",
    "hardlink": "is a link",
    "device": "not a regular file",
    "fifo": "not a regular file",
    "zip dot-dot": "'..' component",
    "zip absolute": "absolute path",
    "zip windows": "'..' component",
    "zip symlink": "symbolic link",
    "not an archive": "not a zip or tar archive",
    "corrupt gzip": "not a zip or tar archive",
    "truncated": "corrupt",
}


def test_safe_extract_refuses_each_trick(tmp_path: Path):
    for reason, archive in malicious(tmp_path).items():
        dest = tmp_path / "out" / reason
        with pytest.raises(BadRequest) as info:
            safe_extract(archive, dest, label=reason)
        assert reason in str(info.value) and WHY[reason] in str(info.value), info.value
        assert not dest.exists(), f"{reason}: partial extraction left behind"
    assert not (tmp_path.parent / "evil.py").exists()
    assert not Path("/tmp/evil.py").exists()


def test_bombs_and_counts(tmp_path: Path):
    # Given a zip of 2 MB of zeros (a few KB compressed) and a tar.gz of the same
    zeros = b"\0" * (2 * 1024 * 1024)
    zip_bomb = _zip(tmp_path / "bomb.zip", [("zeros", zeros)])
    tar_bomb = _tar(tmp_path / "bomb.tar.gz", [(_file("zeros"), zeros)], "w:gz")
    assert zip_bomb.stat().st_size < 20_000 and tar_bomb.stat().st_size < 20_000
    strict = Limits(max_ratio=50, ratio_floor=1024 * 1024)
    # Then the expansion ratio refuses both (declared size for zip, actual bytes for tar)
    for bomb in (zip_bomb, tar_bomb):
        with pytest.raises(BadRequest, match="expands to more than|declares"):
            safe_extract(bomb, tmp_path / "out" / bomb.name, limits=strict)
        assert not (tmp_path / "out" / bomb.name).exists()
    # and the total size limit too
    with pytest.raises(BadRequest):
        safe_extract(tar_bomb, tmp_path / "out" / "total", limits=Limits(max_total_bytes=1000))
    # while the default limits accept them (2 MB is not absurd)
    assert (safe_extract(zip_bomb, tmp_path / "ok") / "zeros").stat().st_size == len(zeros)
    # too many members
    many = _zip(tmp_path / "many.zip", [(f"f{i}", b"x") for i in range(20)])
    with pytest.raises(BadRequest, match="more than 10 members"):
        safe_extract(many, tmp_path / "out" / "many", limits=Limits(max_members=10))


def test_node_refuses_bad_archives_at_upload(tmp_path: Path):
    node = Node(tmp_path / "state")
    try:
        dataset = node.add_dataset(
            {"name": "d", "type": "csv", "permissions": PUBLIC},
            {
                "data_opener": assets.opener_path(),
                "description": assets.description_path("d", tmp_path),
            },
        )
        description = assets.description_path("an algo", tmp_path)
        for reason, archive in malicious(tmp_path).items():
            with pytest.raises(BadRequest):
                node.add_algo(
                    "algo", {"name": reason}, {"file": archive, "description": description}
                )
            with pytest.raises(BadRequest):
                node.add_data_samples(
                    {"data_manager_keys": [dataset["pkhash"]]}, archives={reason: archive}
                )
        assert node.list("algo") == [[]]
        assert node.list("data_sample") == []
        assert list((tmp_path / "state" / "tmp").iterdir()) == []  # nothing left behind
        assert not (tmp_path / "state" / "samples").exists() or not any(
            (tmp_path / "state" / "samples").iterdir()
        )
    finally:
        node.close()


def test_node_accepts_zip_tar_and_tar_gz_samples(tmp_path: Path):
    folder = assets.make_sample_folders(tmp_path / "samples", 1, seed=5)[0]
    (folder / "sub").mkdir()
    (folder / "sub" / "extra.txt").write_text("more\n")
    expected = keys.data_sample_key(folder)
    files = {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
    node = Node(tmp_path / "state")
    try:
        dataset = node.add_dataset(
            {"name": "d", "type": "csv", "permissions": PUBLIC},
            {
                "data_opener": assets.opener_path(),
                "description": assets.description_path("d", tmp_path),
            },
        )["pkhash"]
        for fmt in ("zip", "tar", "tar.gz"):
            archive = tmp_path / f"sample.{fmt}"
            archive.write_bytes(assets.archive_bytes(files, fmt))
            data = {"data_manager_keys": [dataset], "test_only": False}
            if fmt == "zip":
                answer = node.add_data_samples(data, archives={"path": archive})
                assert answer[0]["pkhash"] == expected and answer[0]["validated"] is True
                stored = Path(answer[0]["path"])
                assert (stored / "sub" / "extra.txt").read_text() == "more\n"
                assert keys.data_sample_key(stored) == expected
            else:
                with pytest.raises(Conflict) as info:
                    node.add_data_samples(data, archives={"path": archive})
                assert info.value.pkhash == [expected]
    finally:
        node.close()


def test_client_refuses_a_bad_algo_archive(client: Client, tmp_path: Path):
    archive = malicious(tmp_path)["symlink"]
    with pytest.raises(exceptions.InvalidRequest, match="link"):
        client.add_algo(
            {
                "name": "evil",
                "file": str(archive),
                "description": str(assets.description_path("evil", tmp_path)),
                "permissions": PUBLIC,
            }
        )


def test_server_paths_only_inside_data_roots(tmp_path: Path):
    root = tmp_path / "root"
    inside = assets.make_sample_folders(root / "batch", 3, seed=7)
    outside = assets.make_sample_folders(tmp_path / "elsewhere", 1, seed=8)[0]
    node = Node(tmp_path / "state", data_roots=[root])
    try:
        dataset = node.add_dataset(
            {"name": "d", "type": "csv", "permissions": PUBLIC},
            {
                "data_opener": assets.opener_path(),
                "description": assets.description_path("d", tmp_path),
            },
        )["pkhash"]
        with pytest.raises(Forbidden):
            node.add_data_samples({"path": str(outside), "data_manager_keys": [dataset]})
        with pytest.raises(Forbidden):  # '..' does not escape either
            node.add_data_samples(
                {
                    "path": str(root / ".." / "elsewhere" / outside.name),
                    "data_manager_keys": [dataset],
                }
            )
        # multiple: each sub-folder of the path is a sample, registered where it is
        answer = node.add_data_samples(
            {"path": str(root / "batch"), "multiple": True, "data_manager_keys": [dataset]}
        )
        assert [a["pkhash"] for a in answer] == [keys.data_sample_key(f) for f in inside]
        assert [a["path"] for a in answer] == [str(f.resolve()) for f in inside]
        assert node.get("data_manager", dataset)["trainDataSampleKeys"] == [
            a["pkhash"] for a in answer
        ]
    finally:
        node.close()
    # without data roots, no server path at all
    bare = Node(tmp_path / "state2")
    try:
        with pytest.raises(Forbidden):
            bare.add_data_samples({"path": str(inside[0]), "data_manager_keys": []})
    finally:
        bare.close()
