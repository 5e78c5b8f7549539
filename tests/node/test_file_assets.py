"""File assets and sample folders on a Node: what a refusal leaves behind (nothing), and
what each way of registering a sample folder reads (see node/registry.py)."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from substra_worker.node.errors import BadRequest, Forbidden
from substra_worker.node.keys import data_sample_key
from substra_worker.node.node import Node
from substra_worker.sdk.exceptions import InvalidRequest
from tests import assets
from tests.node.conftest import PUBLIC, node_of


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


REFUSED = {
    "not an archive": (b"this is not an archive\n", "not a zip or tar"),
    "no Dockerfile": (zip_of({"algo.py": b"print('hi')\n"}), "Dockerfile"),
    "no ENTRYPOINT": (
        zip_of({"Dockerfile": b"FROM python:3.7\n", "algo.py": b"print('hi')\n"}),
        "ENTRYPOINT",
    ),
    "script missing": (
        zip_of({"Dockerfile": b'FROM python:3.7\nENTRYPOINT ["python3", "gone.py"]\n'}),
        "gone.py",
    ),
    "path traversal": (zip_of({"Dockerfile": b"x", "../escaped.py": b"x"}), "'..'"),
}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path / "state", base_url="http://127.0.0.1:9")
    yield n
    n.close()


def stored_files(node: Node) -> list[Path]:
    """Every file of the file store and every entry of the archive cache."""
    files = [p for p in (node.state_dir / "files").rglob("*") if p.is_file()]
    cache = node.state_dir / "cache"
    return files + (list(cache.iterdir()) if cache.is_dir() else [])


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize("asset", ["algo", "composite_algo", "objective"])
def test_a_refused_archive_leaves_nothing_behind(node: Node, tmp_path: Path, asset, case):
    # Given a node that already holds other files
    description = assets.description_path(f"# {asset} {case}\n", tmp_path)
    before = stored_files(node)
    data, reason = REFUSED[case]
    archive = tmp_path / "upload.zip"
    archive.write_bytes(data)
    # When the archive is refused
    with pytest.raises(BadRequest, match=reason):
        if asset == "objective":
            node.add_objective(
                {"name": "o", "permissions": PUBLIC},
                {"metrics": archive, "description": description},
            )
        else:
            node.add_algo(
                asset,
                {"name": "a", "permissions": PUBLIC},
                {"file": archive, "description": description},
            )
    # Then neither the archive, nor its extraction, nor the description was kept
    assert stored_files(node) == before
    assert not node.state_dir.joinpath("files", "tmp").exists() or not any(
        node.state_dir.joinpath("files", "tmp").iterdir()
    )
    assert node.list("algo") == [[]] and node.list("objective") == [[]]


def test_an_accepted_archive_is_stored_and_extracted_once(node: Node, tmp_path: Path):
    archive = assets.make_algo_archive("algo", tmp_path)
    key = hashlib.sha256(archive.read_bytes()).hexdigest()
    description = assets.description_path("# algo\n", tmp_path)
    for kind in ("algo", "composite_algo"):  # the same bytes as two kinds: one file, one folder
        node.add_algo(
            kind,
            {"name": kind, "permissions": PUBLIC},
            {"file": archive, "description": description},
        )
    store = node.state_dir / "files"
    assert (store / key[:2] / key).is_file()
    assert [p.name for p in (node.state_dir / "cache").iterdir()] == [key]


# --- sample folders -------------------------------------------------------------------------


@pytest.fixture
def linking_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A sample folder whose data file is a link to a file elsewhere, and a plain copy of it."""
    elsewhere = assets.make_sample_folders(tmp_path / "elsewhere", 1, prefix="real")[0]
    linking = tmp_path / "linking" / "sample"
    linking.mkdir(parents=True)
    (linking / "data.csv").symlink_to(elsewhere / "data.csv")
    return linking, elsewhere


@pytest.fixture
def dataset(client, tmp_path: Path) -> str:
    return client.add_dataset(
        {
            "name": "d",
            "type": "csv",
            "data_opener": str(assets.opener_path()),
            "description": str(assets.description_path("# d\n", tmp_path)),
            "permissions": PUBLIC,
        }
    )["key"]


def test_local_copy_carries_linked_files_as_content(client, dataset, linking_folder):
    linking, elsewhere = linking_folder
    answer = client.add_data_sample(
        {"path": str(linking), "data_manager_keys": [dataset]}, local=True
    )
    # the same key as the folder it links to: the content counts, not the link
    assert answer["pkhash"] == data_sample_key(elsewhere)
    copied = node_of(client).state_dir / "samples" / answer["pkhash"]
    assert not (copied / "data.csv").is_symlink()
    assert (copied / "data.csv").read_bytes() == (elsewhere / "data.csv").read_bytes()


def test_local_copy_refuses_broken_links_and_special_files(client, dataset, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "gone.csv").symlink_to(tmp_path / "no-such-file")
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "pipe")  # copying it would block
    for folder, message in (
        (broken, "gone.csv in the data sample folder is a broken link"),
        (fifo, "not a regular file"),
    ):
        with pytest.raises(InvalidRequest, match=message):
            client.add_data_sample(
                {"path": str(folder), "data_manager_keys": [dataset]}, local=True
            )


def test_server_paths_follow_links_inside_the_roots_only(tmp_path, linking_folder):
    linking, elsewhere = linking_folder
    outside = Node(tmp_path / "a", data_roots=[linking.parent])
    inside = Node(tmp_path / "b", data_roots=[tmp_path])
    try:
        with pytest.raises(Forbidden, match="data.csv links to a file outside"):
            outside.add_data_samples({"path": str(linking)})
        [sample] = inside.add_data_samples({"path": str(linking)})
        assert sample["pkhash"] == data_sample_key(elsewhere)
        assert sample["path"] == str(linking.resolve())  # registered in place
    finally:
        outside.close()
        inside.close()
