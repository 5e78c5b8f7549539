"""What the benchmarks register: sample folders, a dataset, the trivial algo.

Content is generated from a tag, so each variant of a benchmark gets samples of
its own (the node dedupes samples by content) and a run is reproducible.
"""

from __future__ import annotations

import io
import os
import random
import tarfile
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
OPENER = ASSETS / "opener.py"
ALGO = ASSETS / "algo.py"
DESCRIPTION = ASSETS / "description.md"
SAMPLE_FILES = 3  # files per small sample folder: data.csv and two binary parts
SAMPLE_FILE_BYTES = 4 * 1024  # bytes of each binary part
CSV_ROWS = 100  # rows of each data.csv (about 2 KB)
_DOCKERFILE = (
    "FROM substrafoundation/substra-tools:0.6.1-minimal\n\n"
    "COPY algo.py .\n\n"
    'ENTRYPOINT ["python3", "algo.py"]\n'
)
_MTIME = 1_577_836_800  # fixed archive mtimes: the same archive gives the same algo key


def write_sample(folder: Path, tag: str) -> Path:
    """One small sample folder whose content is unique to ``tag``: data.csv + binary parts."""
    rng = random.Random(tag)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"# {tag}"]
    for _ in range(CSV_ROWS):
        x = rng.uniform(-5.0, 5.0)
        rows.append(f"{x:.4f},{2.0 * x + rng.gauss(0.0, 0.05):.6f}")
    (folder / "data.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for i in range(1, SAMPLE_FILES):
        (folder / f"part-{i}.bin").write_bytes(rng.randbytes(SAMPLE_FILE_BYTES))
    return folder


def make_samples(root: Path, n: int, tag: str) -> list[Path]:
    """``n`` sample folders ``root/s00000...``, content unique to (``tag``, index)."""
    return [write_sample(root / f"s{i:05d}", f"{tag}/{i}") for i in range(n)]


def big_sample(folder: Path, size_mib: int, files: int = 4) -> Path:
    """A sample folder of ``size_mib`` MiB in ``files`` files of random bytes, written in chunks."""
    folder.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(1024 * 1024)
    per_file = max(1, size_mib // files)
    written = 0
    for i in range(files):
        count = per_file if i < files - 1 else size_mib - written
        with open(folder / f"part-{i}.bin", "wb") as out:
            for j in range(count):
                # vary each MiB so that nothing downstream can shortcut repeated blocks
                out.write((written + j).to_bytes(8, "big") + chunk[8:])
        written += count
    return folder


def opener_variant(dest: Path, tag: str) -> Path:
    """The bench opener with a comment naming ``tag``: a distinct dataset key per tag."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(OPENER.read_text(encoding="utf-8") + f"\n# {tag}\n", encoding="utf-8")
    return dest


def register_dataset(client, work: Path, tag: str) -> str:
    """Register a dataset with the bench opener through ``client``; return its key."""
    opener = opener_variant(work / f"opener-{tag}.py", tag)
    dataset = client.add_dataset(
        {
            "name": f"bench {tag}",
            "type": "csv",
            "data_opener": str(opener),
            "description": str(DESCRIPTION),
            "permissions": {"public": True, "authorized_ids": []},
        },
        exist_ok=True,
    )
    return dataset["key"]


def algo_archive(dest: Path) -> Path:
    """The trivial algo as a reproducible tar.gz (Dockerfile + algo.py)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    members = {"Dockerfile": _DOCKERFILE.encode(), "algo.py": ALGO.read_bytes()}
    with tarfile.open(dest, "w:gz") as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = _MTIME
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return dest
