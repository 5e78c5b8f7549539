"""Safe extraction of uploaded archives (zip, tar, tar.gz/bz2/xz).

Everything an archive could do to escape or exhaust the node is refused at upload
time with a ``BadRequest`` that says why: absolute paths, ``..`` components, links of
any kind (symbolic or hard, in tar and in zip), device files and fifos, encrypted
members, more members than ``Limits.max_members``, and more bytes than
``Limits.max_total_bytes`` or than ``Limits.max_ratio`` times the archive's own size
(zip bombs: declared sizes are checked before extracting, actual bytes while
extracting). A refused archive leaves nothing behind.
"""

from __future__ import annotations

import gzip
import lzma
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from substra_worker.node.errors import BadRequest

CHUNK = 1024 * 1024  # bytes copied at a time


@dataclass(frozen=True)
class Limits:
    """What an archive may expand to."""

    max_members: int = 100_000  # entries (files and folders)
    max_total_bytes: int = 64 * 1024**3  # bytes once extracted
    max_ratio: float = 1000.0  # extracted bytes / archive bytes ...
    ratio_floor: int = 256 * 1024**2  # ... checked only above this many extracted bytes


DEFAULT_LIMITS = Limits()

_DRIVE = re.compile(r"^[A-Za-z]:")
# Errors that mean "this is not a readable archive" (as opposed to a full disk).
_CORRUPT = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,  # zip compression methods the stdlib lacks
    RuntimeError,  # zipfile: encrypted member without password
)


class _Refused(Exception):
    """Raised inside this module with the reason an archive is refused."""


def _relative_path(name: str) -> PurePosixPath | None:
    """The member's path inside the destination, or None for the archive root itself."""
    normalized = name.replace("\\", "/")
    if "\x00" in normalized:
        raise _Refused(f"member name {name!r} contains a NUL byte")
    if normalized.startswith("/") or _DRIVE.match(normalized):
        raise _Refused(f"member {name!r} has an absolute path")
    parts = [p for p in normalized.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _Refused(f"member {name!r} has a '..' component")
    return PurePosixPath(*parts) if parts else None


class _Budget:
    """Counts members and bytes against the limits."""

    def __init__(self, archive_size: int, limits: Limits):
        self.limits = limits
        self.max_bytes = limits.max_total_bytes
        ratio_cap = int(max(archive_size, 1) * limits.max_ratio)
        if ratio_cap < self.max_bytes:
            self.max_bytes = max(ratio_cap, limits.ratio_floor)
        self.members = 0
        self.bytes = 0

    def member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise _Refused(f"more than {self.limits.max_members} members")

    def add(self, count: int) -> None:
        self.bytes += count
        if self.bytes > self.max_bytes:
            raise _Refused(
                f"it expands to more than {self.max_bytes} bytes "
                "(limit on total size and on expansion ratio)"
            )


def _copy(src: IO[bytes], target: Path, declared: int, budget: _Budget) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o644)
    except FileExistsError as e:
        raise _Refused(f"member {target.name!r} appears twice") from e
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > declared:
                raise _Refused(f"member {target.name!r} is larger than it declares")
            budget.add(len(chunk))
            out.write(chunk)


def _make_parent(dest: Path, rel: PurePosixPath, made: set[Path]) -> Path:
    """The path of member ``rel``, its folders made (once each: ``made`` remembers them)."""
    target = dest.joinpath(*rel.parts)
    parent = target.parent
    if parent not in made:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as e:
            raise _Refused(f"member {str(rel)!r} is inside something that is not a folder") from e
        made.add(parent)
    return target


def _extract_zip(archive: Path, dest: Path, budget: _Budget) -> None:
    made = {dest}
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > budget.limits.max_members:
            raise _Refused(f"more than {budget.limits.max_members} members")
        declared = sum(i.file_size for i in infos)
        if declared > budget.max_bytes:
            raise _Refused(f"it declares {declared} bytes, more than {budget.max_bytes}")
        for info in infos:
            budget.member()
            rel = _relative_path(info.filename)
            if info.flag_bits & 0x1:
                raise _Refused(f"member {info.filename!r} is encrypted")
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if kind == stat.S_IFLNK:
                raise _Refused(f"member {info.filename!r} is a symbolic link")
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise _Refused(f"member {info.filename!r} is not a regular file or folder")
            if rel is None:
                continue
            if info.is_dir():
                _make_parent(dest, rel / "x", made)
                continue
            target = _make_parent(dest, rel, made)
            with zf.open(info) as src:
                _copy(src, target, info.file_size, budget)


def _extract_tar(archive: Path, dest: Path, budget: _Budget) -> None:
    # Streaming iteration: members are checked and written one by one, so a tar.gz bomb
    # is stopped by the byte budget before it fills the disk.
    made = {dest}
    with tarfile.open(archive, mode="r:*") as tf:
        for member in tf:
            budget.member()
            rel = _relative_path(member.name)
            if member.issym() or member.islnk():
                raise _Refused(f"member {member.name!r} is a link")
            if not (member.isfile() or member.isdir()):
                raise _Refused(f"member {member.name!r} is not a regular file or folder")
            if rel is None:
                continue
            if member.isdir():
                _make_parent(dest, rel / "x", made)
                continue
            target = _make_parent(dest, rel, made)
            src = tf.extractfile(member)
            if src is None:  # pragma: no cover - isfile() members always have data
                raise _Refused(f"member {member.name!r} has no data")
            with src:
                _copy(src, target, member.size, budget)


def archive_format(path: str | os.PathLike) -> str | None:
    """``"zip"``, ``"tar"`` or None when the file is neither."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, *_CORRUPT):
        return None
    return None


def safe_extract(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    label: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Path:
    """Extract ``archive`` into the new folder ``dest``; refuse anything unsafe.

    ``label`` names the archive in error messages (e.g. the upload's part name).
    Raises ``BadRequest``; on any failure ``dest`` is removed.
    """
    archive = Path(archive)
    dest = Path(dest)
    name = label or archive.name
    fmt = archive_format(archive)
    if fmt is None:
        raise BadRequest(f"archive {name!r} is not a zip or tar archive")
    dest.mkdir(parents=True, exist_ok=False)
    budget = _Budget(archive.stat().st_size, limits)
    try:
        if fmt == "zip":
            _extract_zip(archive, dest, budget)
        else:
            _extract_tar(archive, dest, budget)
    except _Refused as e:
        shutil.rmtree(dest, ignore_errors=True)
        raise BadRequest(f"archive {name!r} refused: {e}") from e
    except (*_CORRUPT, OSError) as e:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(e, OSError) and not _is_format_error(e):
            raise
        raise BadRequest(f"archive {name!r} is corrupt or unreadable: {e}") from e
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def _is_format_error(error: OSError) -> bool:
    """gzip and bz2 report a corrupt stream as OSError; a full disk is an OSError too."""
    if isinstance(error, gzip.BadGzipFile):
        return True
    return error.errno is None
