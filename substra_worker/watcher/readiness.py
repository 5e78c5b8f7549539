"""When is a sample folder complete? Fingerprints, the quiet period and the marker.

A folder is ready when its marker appears (a file named ``<folder><marker_name>``
NEXT to the folder, e.g. ``sample_7.ready``, not older than the folder's files:
a marker inside the folder would be uploaded with it and change the sample's
key, since the client uploads a folder whole), or when its recursive
fingerprint (file count, sizes, mtimes) has stayed the same for the quiet
period. A folder that never settles within ``max_settle_wait`` is reported
stalled once per period and kept under watch.
"""

from __future__ import annotations

import hashlib
import os
import stat
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class NotReady(Exception):
    """Raised when a folder cannot be submitted as it is now; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class FolderGone(NotReady):
    """Raised when the folder disappeared (deleted or moved away)."""


class FolderChanging(NotReady):
    """Raised when the folder changed while it was being read: look again later."""


class BadFolder(NotReady):
    """Raised when the folder's content cannot become a sample until the user fixes it."""


@dataclass(frozen=True)
class Fingerprint:
    """What a folder looks like from its metadata: equal fingerprints mean no change seen."""

    files: int
    size: int  # bytes, all files
    digest: str  # sha1 over sorted (relative path, size, mtime_ns)

    def as_dict(self) -> dict:
        return {"files": self.files, "size": self.size, "digest": self.digest}

    @classmethod
    def from_dict(cls, data: dict | None) -> Fingerprint | None:
        if not data:
            return None
        return cls(int(data["files"]), int(data["size"]), str(data["digest"]))


@dataclass(frozen=True)
class FileEntry:
    rel: str  # path relative to the sample folder, "/"-separated
    path: str  # path to open (symlinks inside the root are followed)
    size: int
    mtime_ns: int


def walk(folder: Path, root: Path, *, root_real: str | None = None) -> list[FileEntry]:
    """Every regular file of ``folder``, recursively, following links that stay inside ``root``.

    Raises FolderGone, FolderChanging or BadFolder (a link leaving the root, a
    broken link, a special file, an unreadable file or folder). ``root_real`` is
    the root's real path, when the caller has it already: resolving it costs a
    ``stat`` per path component, at every call.
    """
    if root_real is None:
        root_real = os.path.realpath(root)
    try:
        top = os.stat(folder)
    except FileNotFoundError as e:
        raise FolderGone("folder was deleted or moved away before it was registered") from e
    except OSError as e:
        raise BadFolder(f"cannot read folder: {e.strerror}") from e
    if not stat.S_ISDIR(top.st_mode):
        raise FolderGone("no longer a folder")
    if not _inside(os.path.realpath(folder), root_real):
        raise BadFolder("folder is a symlink pointing outside the watch root")

    files: list[FileEntry] = []
    seen_dirs = {(top.st_dev, top.st_ino)}
    stack = [(str(folder), "")]
    while stack:
        dir_path, dir_rel = stack.pop()
        try:
            entries = list(os.scandir(dir_path))
        except FileNotFoundError as e:
            if not os.path.isdir(folder):
                raise FolderGone("folder was deleted or moved away before it was registered") from e
            raise FolderChanging("a sub-folder vanished while being read") from e
        except OSError as e:
            raise BadFolder(f"cannot read folder {dir_rel or '.'!r}: {e.strerror}") from e
        for entry in entries:
            rel = f"{dir_rel}/{entry.name}" if dir_rel else entry.name
            path = entry.path
            try:
                if entry.is_symlink():
                    target = os.path.realpath(path)
                    if not _inside(target, root_real):
                        raise BadFolder(f"symlink {rel!r} points outside the watch root")
                    if not os.path.exists(path):
                        raise BadFolder(f"symlink {rel!r} is broken")
                st = os.stat(path)
            except FileNotFoundError as e:
                raise FolderChanging(f"{rel!r} vanished while being read") from e
            except OSError as e:
                raise BadFolder(f"cannot read {rel!r}: {e.strerror}") from e
            if stat.S_ISDIR(st.st_mode):
                if entry.is_symlink():
                    # The upload archives linked files but not linked folders: refuse
                    # rather than register a sample that silently lacks them.
                    raise BadFolder(
                        f"symlink {rel!r} points to a folder: linked folders are not uploaded"
                    )
                if (st.st_dev, st.st_ino) in seen_dirs:
                    raise BadFolder(f"folder {rel!r} appears twice (hard link loop)")
                seen_dirs.add((st.st_dev, st.st_ino))
                stack.append((path, rel))
            elif stat.S_ISREG(st.st_mode):
                if not os.access(path, os.R_OK):
                    raise BadFolder(f"file {rel!r} is unreadable: permission denied")
                files.append(FileEntry(rel, path, st.st_size, st.st_mtime_ns))
            else:
                raise BadFolder(f"{rel!r} is not a regular file (fifo, socket or device)")
    files.sort(key=lambda f: f.rel)
    return files


def fingerprint(files: list[FileEntry]) -> Fingerprint:
    digest = hashlib.sha1(usedforsecurity=False)
    size = 0
    for f in files:
        size += f.size
        digest.update(f"{f.rel}\0{f.size}\0{f.mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return Fingerprint(len(files), size, digest.hexdigest())


def folder_fingerprint(folder: Path, root: Path, *, root_real: str | None = None) -> Fingerprint:
    return fingerprint(walk(folder, root, root_real=root_real))


def open_for_hash(path: str):
    """Open one sample file for hashing (a seam: the one place file content is opened)."""
    return open(path, "rb")  # noqa: SIM115 - closed by the caller's with-block


def sample_key(files: list[FileEntry]) -> str:
    """The data sample key the node will compute: sha256 of the sorted sha256 of every file."""
    digests = []
    for f in files:
        h = hashlib.sha256()
        try:
            with open_for_hash(f.path) as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(chunk)
        except FileNotFoundError as e:
            raise FolderChanging(f"{f.rel!r} vanished while being read") from e
        except OSError as e:
            raise BadFolder(f"file {f.rel!r} is unreadable: {e.strerror or e}") from e
        digests.append(h.hexdigest())
    return hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()


# --- names ---------------------------------------------------------------------------

_FORBIDDEN = set('"\\/')  # break the multipart part name the upload carries


def name_problem(name: str) -> str | None:
    """Why a folder name cannot be used as a sample name, or None when it can.

    The upload names each archive after its folder, so a name must travel as
    UTF-8 inside a multipart header: no undecodable bytes, no control
    characters, no quotes or backslashes, no leading/trailing spaces.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "folder name is not valid UTF-8"
    if any(unicodedata.category(c).startswith("C") for c in name):
        return "folder name contains control characters"
    if any(c in _FORBIDDEN for c in name):
        return "folder name contains a quote or a backslash"
    if name != name.strip():
        return "folder name starts or ends with whitespace"
    if len(name.encode("utf-8")) > 200:
        return "folder name is longer than 200 bytes"
    return None


def display_name(name: str) -> str:
    """A printable form of any name (undecodable bytes and controls escaped)."""
    text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _inside(path: str, root_real: str) -> bool:
    return path == root_real or path.startswith(root_real.rstrip(os.sep) + os.sep)


# --- the settle tracker ------------------------------------------------------------------


class Verdict(StrEnum):
    WAITING = "waiting"
    READY = "ready"
    STALLED = "stalled"


@dataclass
class _Settle:
    fingerprint: Fingerprint | None
    first_seen: float
    changed_at: float
    watch_since: float  # start of the current max_settle_wait period


class Readiness:
    """Decides, folder by folder, when the fingerprint has settled."""

    def __init__(self, quiet_period: float, max_settle_wait: float):
        self.quiet_period = quiet_period
        self.max_settle_wait = max_settle_wait
        self._folders: dict[str, _Settle] = {}

    def observe(
        self, key: str, fp: Fingerprint | None, now: float, *, marker: bool = False
    ) -> Verdict:
        """Record the current fingerprint of ``key``; say whether it is ready now.

        ``fp`` None means the folder could not be read this time: it counts as a change.
        """
        s = self._folders.get(key)
        if s is None:
            s = self._folders[key] = _Settle(fp, now, now, now)
        elif fp is None or fp != s.fingerprint:
            s.fingerprint = fp
            s.changed_at = now
        if fp is not None and (marker or now - s.changed_at >= self.quiet_period):
            return Verdict.READY
        if now - s.watch_since >= self.max_settle_wait:
            s.watch_since = now  # report once per period, keep watching
            return Verdict.STALLED
        return Verdict.WAITING

    def next_due(self, key: str) -> float | None:
        """When ``key`` could next become ready (or stalled) if nothing changes."""
        s = self._folders.get(key)
        if s is None:
            return None
        return min(s.changed_at + self.quiet_period, s.watch_since + self.max_settle_wait)

    def waiting_since(self, key: str) -> float | None:
        s = self._folders.get(key)
        return None if s is None else s.first_seen

    def forget(self, key: str) -> None:
        self._folders.pop(key, None)

    def __len__(self) -> int:
        return len(self._folders)

    def __contains__(self, key: str) -> bool:
        return key in self._folders

    def folders(self) -> list[str]:
        """The folders being watched until they settle."""
        return list(self._folders)


def marker_path(folder: Path, marker_name: str) -> Path | None:
    """The marker of ``folder`` (``<folder><marker_name>`` beside it), or None when disabled."""
    if not marker_name:
        return None
    return folder.with_name(folder.name + marker_name)


def marker_is_fresh(folder: Path, marker_name: str, files: list[FileEntry]) -> bool:
    """Whether the folder's marker exists and is not older than any of its files.

    A marker left from an earlier registration does not make a folder that is
    being changed again ready: it has to be written again (or the quiet period
    applies).
    """
    marker = marker_path(folder, marker_name)
    if marker is None:
        return False
    try:
        st = os.stat(marker)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    newest = max((f.mtime_ns for f in files), default=0)
    return st.st_mtime_ns >= newest
