"""Test assets written against substratools 0.6.1, and helpers that package them.

The sources live in ``src/``:

- ``opener.py``: reads ``data.csv`` (rows ``x,y``) from every data-sample folder;
  predictions are a JSON list of floats.
- ``algo.py``: least-squares line ``y = a*x + b``; models are JSON ``{"a", "b"}``. With
  input models, the result is the mean of the local fit and of the inputs' average.
- ``aggregate_algo.py``: the average of every numeric parameter the input models share
  (so it aggregates algo models ``{"a", "b"}`` and composite trunks ``{"a"}`` alike).
- ``composite_algo.py``: trunk = slope ``{"a"}``, head = intercept ``{"b"}``.
- ``failing_algo.py``: ``train`` raises ``RuntimeError(FAILURE_MESSAGE)``.
- ``sleeping_algo.py``: sleeps (``sleep_seconds.txt`` in its archive, or the
  ``SLEEPING_ALGO_SECONDS`` environment variable), with a child process sleeping as long,
  then trains like ``algo.py``. It writes ``"<pid> <child pid>"`` to ``sleeping_algo.pids``
  in its working directory.
- ``metrics.py``: NEGATIVE mean squared error (higher is better, so the leaderboard's
  default ``desc`` order puts the best first).
- ``linear.py``: least-squares helpers shipped inside the archives that need them.

Every archive holds a Dockerfile whose ``ENTRYPOINT`` is ``["python3", "<script>"]``.
Archives are byte-for-byte reproducible (fixed mtimes, owners and modes; no gzip
timestamp), so the same arguments always give the same asset key; ``variant`` gives a
different key for the same behaviour.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parent / "src"

ALGO_KINDS = ("algo", "aggregate_algo", "composite_algo", "failing_algo", "sleeping_algo")
# the asset kind a test algo is registered as
ASSET_KIND = {
    "algo": "algo",
    "failing_algo": "algo",
    "sleeping_algo": "algo",
    "aggregate_algo": "aggregate_algo",
    "composite_algo": "composite_algo",
}
FAILURE_MESSAGE = "failing_algo: deliberate failure in train"  # in the failing step's log
PIDS_FILE = "sleeping_algo.pids"  # written by the sleeping algo in its working directory
SLEEP_SECONDS = 30.0  # default sleep of the sleeping algo
METRICS_NAME = "neg_mse"
SAMPLE_FILE = "data.csv"
SLOPE = 2.0  # data samples follow y = SLOPE * x + INTERCEPT + noise
INTERCEPT = 1.0
NOISE = 0.05  # standard deviation of the noise
DEFAULT_DESCRIPTION = "# Test asset\n\nAn asset of the substra-worker tests.\n"

_MTIME = 1_577_836_800  # 2020-01-01T00:00:00Z, for every archive member
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)
_HELPERS = {
    "algo": ("linear.py",),
    "aggregate_algo": ("linear.py",),
    "composite_algo": ("linear.py",),
    "failing_algo": (),
    "sleeping_algo": ("linear.py",),
}
_DOCKERFILE = """\
FROM substrafoundation/substra-tools:0.6.1-minimal

COPY {files} ./

ENTRYPOINT ["python3", "{script}"]
"""


# --------------------------------------------------------------------------- archives


def _variant(data: bytes, variant: int) -> bytes:
    return data + f"\n# variant {variant}\n".encode() if variant else data


def _dockerfile(script: str, files: list[str]) -> bytes:
    return _DOCKERFILE.format(files=" ".join(files), script=script).encode()


def algo_files(kind: str, *, variant: int = 0, sleep: float = SLEEP_SECONDS) -> dict[str, bytes]:
    """The members of an algo archive: name -> content."""
    if kind not in ALGO_KINDS:
        raise ValueError(f"unknown test algo kind {kind!r}; expected one of {ALGO_KINDS}")
    script = f"{kind}.py"
    files = {script: _variant((SRC / script).read_bytes(), variant)}
    for helper in _HELPERS[kind]:
        files[helper] = (SRC / helper).read_bytes()
    if kind == "sleeping_algo":
        files["sleep_seconds.txt"] = f"{sleep:g}\n".encode()
    files["Dockerfile"] = _dockerfile(script, sorted(files))
    return files


def metrics_files(*, variant: int = 0) -> dict[str, bytes]:
    """The members of the metrics archive: name -> content."""
    files = {"metrics.py": _variant((SRC / "metrics.py").read_bytes(), variant)}
    files["Dockerfile"] = _dockerfile("metrics.py", ["metrics.py"])
    return files


def write_files(files: Mapping[str, bytes], dest_dir: Path) -> Path:
    """Write archive members as plain files (an 'extracted archive'); return dest_dir."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (dest_dir / name).write_bytes(data)
    return dest_dir


def write_algo_dir(
    kind: str, dest_dir: Path, *, variant: int = 0, sleep: float = SLEEP_SECONDS
) -> Path:
    """The algo's archive members written into dest_dir, as if extracted."""
    return write_files(algo_files(kind, variant=variant, sleep=sleep), dest_dir)


def write_metrics_dir(dest_dir: Path, *, variant: int = 0) -> Path:
    """The metrics archive members written into dest_dir, as if extracted."""
    return write_files(metrics_files(variant=variant), dest_dir)


def _tar_bytes(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mtime = _MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def archive_bytes(files: Mapping[str, bytes], fmt: str) -> bytes:
    """A reproducible archive of ``files`` in ``fmt``: "tar.gz", "tar" or "zip"."""
    if fmt == "tar":
        return _tar_bytes(files)
    if fmt in ("tar.gz", "tgz"):
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
            gz.write(_tar_bytes(files))
        return buf.getvalue()
    if fmt == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # unix, so the mode below is meaningful
                info.external_attr = 0o100644 << 16
                zf.writestr(info, files[name])
        return buf.getvalue()
    raise ValueError(f"unknown archive format {fmt!r}; expected tar.gz, tar or zip")


def _write_atomic(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def make_algo_archive(
    kind: str,
    dest_dir: Path,
    fmt: str = "tar.gz",
    *,
    variant: int = 0,
    sleep: float = SLEEP_SECONDS,
) -> Path:
    """Archive (Dockerfile + script + helpers) of a test algo in dest_dir; return its path.

    kind: one of ALGO_KINDS. ``sleep`` (seconds) only matters for "sleeping_algo".
    """
    name = kind + (f"-v{variant}" if variant else "")
    if kind == "sleeping_algo":
        name += f"-{sleep:g}s"
    data = archive_bytes(algo_files(kind, variant=variant, sleep=sleep), fmt)
    return _write_atomic(Path(dest_dir) / f"{name}.{fmt}", data)


def metrics_archive(dest_dir: Path, fmt: str = "zip", *, variant: int = 0) -> Path:
    """Archive (Dockerfile + metrics.py) of the test metrics in dest_dir; return its path."""
    name = "metrics" + (f"-v{variant}" if variant else "")
    return _write_atomic(
        Path(dest_dir) / f"{name}.{fmt}", archive_bytes(metrics_files(variant=variant), fmt)
    )


def unpack_archive(archive: Path, dest_dir: Path) -> Path:
    """Extract one of OUR archives (trusted) into dest_dir; return dest_dir."""
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest_dir)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(dest_dir, filter="data")
    return dest_dir


# --------------------------------------------------------------------------- plain files


def _cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "substra-worker-test-assets"


def _write_named(data: bytes, dest_dir: Path | None, stem: str, suffix: str) -> Path:
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = Path(dest_dir or _cache_dir()) / f"{stem}-{digest}{suffix}"
    if path.is_file() and path.read_bytes() == data:
        return path
    return _write_atomic(path, data)


def opener_path(dest_dir: Path | None = None, *, variant: int = 0) -> Path:
    """The test opener. ``variant`` > 0 gives a copy with another content (another dataset key),
    written to dest_dir (default: a cache folder in the temp dir)."""
    if not variant:
        return SRC / "opener.py"
    return _write_named(
        _variant((SRC / "opener.py").read_bytes(), variant), dest_dir, "opener", ".py"
    )


def description_path(text: str = DEFAULT_DESCRIPTION, dest_dir: Path | None = None) -> Path:
    """A markdown description holding ``text`` (distinct texts give distinct files and keys),
    in dest_dir (default: a cache folder in the temp dir)."""
    return _write_named(text.encode("utf-8"), dest_dir, "description", ".md")


def make_sample_folders(
    root: Path,
    n: int,
    test: bool = False,
    *,
    seed: int = 0,
    prefix: str = "sample",
    rows: int = 5,
) -> list[Path]:
    """n data-sample folders ``root/<prefix><i>``, each with a data.csv of ``rows`` points of
    y = SLOPE*x + INTERCEPT + noise.

    Content depends on (seed, prefix, test, i) only: every folder of a call differs from
    the others (so their keys differ), and the same arguments give the same keys again.
    """
    root = Path(root)
    folders = []
    for i in range(n):
        tag = f"{prefix}{i} seed={seed} test={test}"
        rng = random.Random(tag)
        lines = [f"# {tag}"]
        for _ in range(rows):
            x = rng.uniform(-5.0, 5.0)
            y = SLOPE * x + INTERCEPT + rng.gauss(0.0, NOISE)
            lines.append(f"{x:.4f},{y:.6f}")
        folder = root / f"{prefix}{i}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SAMPLE_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        folders.append(folder)
    return folders


def sample_points(folders: list[Path]) -> list[tuple[float, float]]:
    """The (x, y) points of sample folders, as the opener reads them (sorted folders)."""
    points = []
    for folder in sorted(str(f) for f in folders):
        for line in (Path(folder) / SAMPLE_FILE).read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                x, y = line.split(",")
                points.append((float(x), float(y)))
    return points
