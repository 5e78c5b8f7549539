"""Fixtures of the client tests: a scripted node on loopback, a client aimed at it, input files."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from substra_worker.sdk import Client

from .scripted_server import ScriptedServer

TOKEN = "s3cr3t-token"
ACCEPT = "application/json;version=0.0"


def key(label: str) -> str:
    """A 64-hex key, stable per label."""
    return hashlib.sha256(label.encode()).hexdigest()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ScriptedServer) -> Iterator[Client]:
    with Client(url=server.url, token=TOKEN, retry_timeout=3) as c:
        yield c


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Input files of the file assets: descriptions, an opener, archives."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    description = folder / "description.md"
    description.write_text("# An asset\n\nIts description.\n")
    opener = folder / "opener.py"
    opener.write_text("import substratools as tools\n")
    algo = _tar(folder / "algo.tar.gz", {"Dockerfile": b"FROM python\n", "algo.py": b"print(1)\n"})
    metrics = _tar(folder / "metrics.tar.gz", {"Dockerfile": b"FROM x\n", "metrics.py": b"x=1\n"})
    return {"description": description, "opener": opener, "algo": algo, "metrics": metrics}


@pytest.fixture
def sample_dirs(tmp_path: Path) -> list[Path]:
    """Three data-sample folders, one with a sub-folder."""
    dirs = []
    for i in range(3):
        d = tmp_path / "samples" / f"sample{i}"
        d.mkdir(parents=True)
        (d / "x.csv").write_text(f"{i},{i * 2}\n")
        (d / "sub").mkdir()
        (d / "sub" / "y.bin").write_bytes(bytes(range(256)) * (i + 1))
        dirs.append(d)
    return dirs
