"""Data-sample folders as temporary zip archives, built and sent without holding them in memory.

The reference client zipped each folder in memory, which capped uploads at a
few megabytes. Here each folder is written file by file (``zipfile`` copies in
small chunks) to a temporary file on disk, which the upload then streams.
Entries are stored uncompressed: samples are often already compressed (images,
archives), deflating a gigabyte costs far more CPU than it saves on a local
link, and a node accepts any zip.

The zips are spooled in a folder of their own, each named after the process
that writes it, so that the zips of a process killed mid-upload (a worker's
child under SIGKILL) are found and removed by the next one (``remove_orphans``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from substra_worker import pids


def _files(folder: Path) -> Iterator[Path]:
    """Every file under ``folder``, recursively, in a stable order."""
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            yield Path(root) / name


def write_zip(folder: str | Path, target: str | Path) -> None:
    """Write ``folder``'s files into the zip ``target``, with paths relative to ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"data sample path is not a directory: {folder}")
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for path in _files(folder):
            zf.write(path, arcname=path.relative_to(folder).as_posix())


def spool(dir: str | Path | None = None) -> Path:
    """The folder temporary zips are written to: one per user under ``dir`` (default TMPDIR)."""
    path = Path(dir or tempfile.gettempdir()) / f"substra-worker-zips-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def remove_orphans(dir: str | Path | None = None) -> int:
    """Delete the zips of processes that no longer run; return how many."""
    removed = 0
    for path in spool(dir).glob("*.zip"):
        pid = pids.owner(path.name)
        if pid is not None and not pids.alive(pid):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def zipped_folder(folder: str | Path, *, dir: str | Path | None = None) -> Iterator[Path]:
    """A temporary zip of ``folder`` that exists for the ``with`` block, then is deleted."""
    fd, name = tempfile.mkstemp(prefix=f"{os.getpid()}-sample-", suffix=".zip", dir=spool(dir))
    os.close(fd)
    path = Path(name)
    try:
        write_zip(folder, path)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def zipped_folders(
    folders: list[str | Path], *, dir: str | Path | None = None
) -> Iterator[list[Path]]:
    """Temporary zips of several folders, in order, all deleted when the block ends."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(zipped_folder(f, dir=dir)) for f in folders]
