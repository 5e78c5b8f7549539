"""A lean inotify reader (Linux): which entry of which channel changed, and nothing more.

watchdog's inotify observer pairs the two halves of every move in a queue it
scans from the start, copies its table of watches at each folder moved, and
walks every folder moved in to report each file as moved too. When thousands
of folders are renamed into a channel at once, that costs seconds of CPU: more
than the watcher's own work on them. The watcher only needs to know where to
look (the observer says where, the watcher's scans are the ground truth), so
this reader watches the tree itself and reports the channel and entry of each
event, once per read.

Folders created or moved into the tree are watched (with their sub-folders),
a folder moved away is no longer watched; links are not followed. A watch
that cannot be added below the root (limit reached, folder gone or
unreadable) is skipped, as watchdog does: the watcher's periodic rescans
cover it. On queue overflow the watches are rebuilt and every channel is
reported.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import struct
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Notify = Callable[[str, "str | None"], None]  # (channel, entry name or None for the channel)

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# changes of content or metadata; not opens or reads, which the watcher's own hashing causes
CHANGES = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
)
WATCH_MASK = CHANGES | IN_ONLYDIR | IN_DONT_FOLLOW
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
_READ_SIZE = 1 << 16


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def available() -> bool:
    """Whether this platform has inotify (Linux)."""
    return _LIBC is not None


class InotifyReader(threading.Thread):
    """Watch ``root`` recursively; call ``notify(channel, entry)`` for every change below it.

    Raises OSError at construction when the root cannot be watched (no
    inotify, instance or watch limit reached): the caller may fall back to
    polling.
    """

    def __init__(self, root: str, notify: Notify):
        super().__init__(name="inotify-reader", daemon=True)
        if _LIBC is None:
            raise OSError(errno.ENOSYS, "inotify is not available")
        self.root = os.fsencode(root).rstrip(b"/") or b"/"
        self._prefix = self.root.rstrip(b"/") + b"/"
        self.notify = notify
        fd = _LIBC.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self._fd = fd
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._stopping = threading.Event()
        self._paths: dict[int, bytes] = {}  # watch descriptor -> folder it watches
        self._wds: dict[bytes, int] = {}  # folder -> its watch descriptor
        try:
            self._add(self.root, required=True)
            self._watch_below(self.root)
        except BaseException:
            self._close()
            raise

    # --- watches -----------------------------------------------------------------------

    def _add(self, path: bytes, *, required: bool = False) -> bool:
        """Watch one folder; a folder already watched (moved) keeps its descriptor."""
        wd = _LIBC.inotify_add_watch(self._fd, path, WATCH_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if required:
                raise OSError(err, f"cannot watch {os.fsdecode(path)}: {os.strerror(err)}")
            return False
        old = self._paths.get(wd)
        if old is not None and old != path and self._wds.get(old) == wd:
            del self._wds[old]  # the same folder, moved: events now come from its new place
        self._paths[wd] = path
        self._wds[path] = wd
        return True

    def _forget(self, wd: int) -> None:
        path = self._paths.pop(wd, None)
        if path is not None and self._wds.get(path) == wd:
            del self._wds[path]

    def _unwatch(self, path: bytes) -> None:
        """A folder moved away: stop watching it (it is watched again if it lands in the tree).

        Its sub-folders keep their watches (finding them would mean searching
        every watch): moved back into the tree they follow it, and moved out
        their rare reports name a place where the watcher then finds nothing.
        """
        wd = self._wds.get(path)
        if wd is not None:
            self._forget(wd)
            _LIBC.inotify_rm_watch(self._fd, wd)

    def _watch_below(self, top: bytes) -> None:
        """Watch every folder below ``top`` (not following links)."""
        stack = [top]
        while stack:
            path = stack.pop()
            try:
                with os.scandir(path) as entries:
                    subdirs = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue  # gone or unreadable: the watcher's scans say what it is
            for sub in subdirs:
                if self._add(sub):
                    stack.append(sub)

    def _watch_tree(self, top: bytes) -> None:
        if self._add(top):
            self._watch_below(top)

    # --- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self._stopping.is_set():
                poller.poll()
                if self._stopping.is_set():
                    break
                try:
                    data = os.read(self._fd, _READ_SIZE)
                except (BlockingIOError, InterruptedError):
                    continue
                self._handle(data)
        except Exception:  # noqa: BLE001 - the observer notices a dead reader and starts another
            log.exception("the inotify reader stopped")
        finally:
            self._stopping.set()

    def _handle(self, data: bytes) -> None:
        changed: dict[tuple[str, str | None], None] = {}  # each place once, in order
        offset, size = 0, len(data)
        while offset + _EVENT.size <= size:
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            name = data[start : start + length].rstrip(b"\0")
            offset = start + length
            if mask & IN_Q_OVERFLOW:
                self._overflowed()
                continue
            if mask & IN_IGNORED:
                self._forget(wd)  # the folder was deleted (or unmounted, or unwatched)
                continue
            base = self._paths.get(wd)
            if base is None or not mask & CHANGES:
                continue
            path = base + b"/" + name if name else base
            if mask & IN_ISDIR:
                if mask & (IN_CREATE | IN_MOVED_TO):
                    self._watch_tree(path)
                elif mask & IN_MOVED_FROM:
                    self._unwatch(path)
            place = self._place(path)
            if place is not None:
                changed[place] = None
        for channel, entry in changed:
            self.notify(channel, entry)

    def _place(self, path: bytes) -> tuple[str, str | None] | None:
        """(channel, entry) of a path below the root, or None for the root itself."""
        if not path.startswith(self._prefix):
            return None
        parts = path[len(self._prefix) :].split(b"/", 2)
        if not parts[0]:
            return None
        entry = os.fsdecode(parts[1]) if len(parts) > 1 and parts[1] else None
        return os.fsdecode(parts[0]), entry

    def _overflowed(self) -> None:
        """Events were lost: watch every folder again and have every channel looked at."""
        log.warning("inotify queue overflowed below %s: rebuilding the watches", self.root)
        self._watch_below(self.root)
        with contextlib.suppress(OSError):
            for name in os.listdir(self.root):
                self.notify(os.fsdecode(name), None)

    # --- stopping ----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading and release the inotify instance (every watch with it)."""
        self._stopping.set()
        wake = self._wake_w
        if wake is not None:
            with contextlib.suppress(OSError):
                os.write(wake, b"x")
        if self.is_alive() and threading.current_thread() is not self:
            self.join(5)
        if not self.is_alive():
            self._close()

    def _close(self) -> None:
        for attr in ("_fd", "_wake_r", "_wake_w"):
            fd = getattr(self, attr, None)
            if fd is not None:
                setattr(self, attr, None)
                with contextlib.suppress(OSError):
                    os.close(fd)
