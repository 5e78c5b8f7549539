"""Filesystem events from watchdog, reduced to "this channel / this entry changed".

The observer only says where to look; the watcher's own scans are the ground
truth. Its watches are not recursive: one on the root (channels coming and
going) and one on each channel folder (sample folders, markers and
``channel.json`` coming, going or changing), added and removed by the watcher
as it finds channels appear and disappear. Nothing inside a sample folder is
watched: a folder being written is followed by its fingerprint, read again
each time its quiet period may be over, and a change inside a folder already
registered or refused is found by the next periodic rescan. Recursive watches
would make watchdog watch every sub-folder and, for each folder created or
moved in, walk it and report every file in it: seconds of CPU when thousands
of folders arrive at once, for events the watcher does not need.

Events can be lost: watchdog logs an inotify queue overflow but does not
report it to handlers, so the watcher's periodic rescan is the net. An
observer thread or emitter can die: ``ensure_alive()`` starts a new observer
(or a new watch on the channel), and the caller rescans to catch up on what it
missed. ``--polling`` uses watchdog's polling observer, with the same watches.
When inotify cannot be used (instance or watch limit reached), the observer
falls back to polling.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

log = logging.getLogger(__name__)

# Entries coming, going or changing (not opens or reads, which the watcher's own
# hashing causes). The modified event of a folder is left out with inotify: there
# it only echoes an entry created, deleted or moved, which its own event names.
EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileClosedEvent,
    FileAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    DirAttribEvent,
]
# Polling compares listings: in a channel, a sample folder whose modification
# time changed (an entry added or removed inside it) is reported as modified.
POLLING_CHANNEL_EVENT_TYPES = [*EVENT_TYPES, DirModifiedEvent]

Notify = Callable[[str, "str | None"], None]  # (channel, entry name or None for the channel)


class _EntriesHandler(FileSystemEventHandler):
    """Events of one watch, reduced to the entries of its folder that came, went or changed.

    On the root, an entry is a channel: ``notify(entry, None)``. On a channel,
    ``notify(channel, entry)``; the channel folder's own events (deleted, moved,
    its attributes) are the root's to report, and those of a folder moved to
    another channel are that channel's.
    """

    def __init__(self, path: str, notify: Notify, channel: str | None = None):
        self.path = path
        self.notify = notify
        self.channel = channel

    def dispatch(self, event: FileSystemEvent) -> None:
        for raw in (event.src_path, event.dest_path):
            if raw:
                parent, name = os.path.split(os.fsdecode(raw))
                if parent == self.path and name:
                    if self.channel is None:
                        self.notify(name, None)
                    else:
                        self.notify(self.channel, name)


class FolderObserver:
    """A watchdog observer on the root and on each channel (inotify, or polling), restartable."""

    def __init__(
        self, root: Path, notify: Notify, *, polling: bool = False, poll_interval: float = 1.0
    ):
        self.root = os.path.abspath(root)
        self.notify = notify
        self.polling = polling
        self.poll_interval = poll_interval
        self.observer: BaseObserver | None = None
        self.restarts = 0
        self._root_watch: ObservedWatch | None = None
        self._channels: dict[str, ObservedWatch | None] = {}  # None: could not be watched

    # --- starting ----------------------------------------------------------------------

    def start(self) -> None:
        """Watch the root, and the channels watched before (after a restart)."""
        self.observer = self._start()
        for name in list(self._channels):
            self._channels.pop(name)
            self.watch_channel(name)

    def _start(self) -> BaseObserver:
        observer = self._new_observer()
        try:
            handler = _EntriesHandler(self.root, self.notify)
            self._root_watch = self._schedule(observer, self.root, handler, EVENT_TYPES)
            observer.start()
        except OSError as e:
            with contextlib.suppress(Exception):
                observer.stop()
            if self.polling:
                raise
            # inotify instance or watch limit reached: polling still works
            log.warning("inotify unavailable (%s): falling back to polling", e)
            self.polling = True
            return self._start()
        return observer

    def _new_observer(self) -> BaseObserver:
        observer = PollingObserver(timeout=self.poll_interval) if self.polling else Observer()
        observer.daemon = True
        return observer

    @staticmethod
    def _schedule(
        observer: BaseObserver,
        path: str,
        handler: FileSystemEventHandler,
        event_types: list[type[FileSystemEvent]],
    ) -> ObservedWatch:
        """Watch one folder, not recursively; raises OSError when it cannot be watched."""
        return observer.schedule(handler, path, recursive=False, event_filter=event_types)

    # --- channels ----------------------------------------------------------------------

    def watch_channel(self, name: str) -> None:
        """Watch the entries of a channel folder (idempotent; the caller scans it next)."""
        observer = self.observer
        if observer is None or name in self._channels:
            return
        path = os.path.join(self.root, name)
        try:
            handler = _EntriesHandler(path, self.notify, name)
            types = POLLING_CHANNEL_EVENT_TYPES if self.polling else EVENT_TYPES
            watch = self._schedule(observer, path, handler, types)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return  # gone already: the root's watch reports it
            # watch limit reached, unreadable...: the periodic rescans cover the channel
            log.warning("cannot watch channel %r (%s): found by rescans only", name, e)
            self._channels[name] = None
            return
        self._channels[name] = watch

    def unwatch_channel(self, name: str) -> None:
        """Stop watching a channel that is gone (or no longer a folder)."""
        watch = self._channels.pop(name, None)
        observer = self.observer
        if watch is not None and observer is not None:
            with contextlib.suppress(KeyError, OSError, RuntimeError):
                observer.unschedule(watch)

    @property
    def channels(self) -> set[str]:
        """The channels watched (or tried: a channel that cannot be watched is tried once)."""
        return set(self._channels)

    # --- staying alive -----------------------------------------------------------------

    def alive(self) -> bool:
        """Whether the observer, its inotify reader and every emitter are running."""
        observer = self.observer
        if observer is None or not observer.is_alive():
            return False
        reader = getattr(observer, "_inotify_fd", None)  # the inotify observer's reading thread
        if reader is not None and not reader.is_alive():
            return False
        return all(emitter.is_alive() for emitter in observer.emitters)

    def ensure_alive(self) -> bool:
        """Restart what died; True when something was restarted (events may have been lost).

        A channel's emitter stops on its own when the channel folder is
        deleted: its watch is dropped, and started again if the folder is back.
        Anything else dead (the observer, its reader, the root's emitter) means
        a new observer.
        """
        observer = self.observer
        if observer is not None and observer.is_alive():
            reader = getattr(observer, "_inotify_fd", None)
            dead = [e for e in list(observer.emitters) if not e.is_alive()]
            if (reader is None or reader.is_alive()) and all(
                e.watch != self._root_watch for e in dead
            ):
                return self._restart_channels({e.watch for e in dead})
        log.warning("the folder observer stopped: starting a new one")
        self.stop()
        self.start()
        self.restarts += 1
        return True

    def _restart_channels(self, dead: set[ObservedWatch]) -> bool:
        restarted = False
        for name, watch in list(self._channels.items()):
            if watch is None or watch not in dead:
                continue
            dead.discard(watch)
            self.unwatch_channel(name)
            if os.path.isdir(os.path.join(self.root, name)):
                log.warning("the watch of channel %r stopped: starting a new one", name)
                self.watch_channel(name)
                restarted = True
        for watch in dead:  # no longer a channel's: drop it
            with contextlib.suppress(KeyError, OSError, RuntimeError):
                self.observer.unschedule(watch)
        return restarted

    def stop(self) -> None:
        observer, self.observer = self.observer, None
        if observer is None:
            return
        with contextlib.suppress(Exception):
            observer.stop()
        if observer.is_alive():
            with contextlib.suppress(Exception):
                observer.join(5)
