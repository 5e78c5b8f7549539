"""Filesystem events from watchdog, reduced to "this channel / this entry changed".

The observer only says where to look; the watcher's own rescans are the ground
truth. Events can be dropped (inotify queue overflow) and an observer thread
can die: ``FolderObserver.ensure_alive()`` notices a dead observer or emitter
and starts a new one, and the caller rescans to catch up on what it missed.
On Linux the lean ``inotify.InotifyReader`` watches the tree; elsewhere
watchdog's native observer does; ``--polling`` uses watchdog's polling
observer. When inotify cannot be used (watch limit reached), it falls back to
polling.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from substra_worker.watcher import inotify
from substra_worker.watcher.inotify import InotifyReader

log = logging.getLogger(__name__)

# events that mean content changed (not opens or reads, which our own hashing causes)
EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileClosedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
]

Notify = Callable[[str, "str | None"], None]  # (channel, entry name or None for the channel)


class _Handler(FileSystemEventHandler):
    def __init__(self, root: str, notify: Notify):
        self.root = root
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = os.fsdecode(raw)
            rel = os.path.relpath(path, self.root)
            if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
                continue
            parts = rel.split(os.sep)
            self.notify(parts[0], parts[1] if len(parts) > 1 else None)


class FolderObserver:
    """A watchdog observer on the root (inotify, or polling), restartable."""

    def __init__(
        self, root: Path, notify: Notify, *, polling: bool = False, poll_interval: float = 1.0
    ):
        self.root = str(root)
        self.notify = notify
        self.polling = polling
        self.poll_interval = poll_interval
        self.observer: BaseObserver | InotifyReader | None = None
        self.restarts = 0

    def start(self) -> None:
        self.observer = self._start(self.polling)

    def _start(self, polling: bool) -> BaseObserver | InotifyReader:
        if not polling and inotify.available():
            try:
                reader = InotifyReader(self.root, self.notify)
            except OSError as e:
                return self._fall_back(e)
            reader.start()
            return reader
        observer: BaseObserver = (
            PollingObserver(timeout=self.poll_interval) if polling else Observer()
        )
        observer.daemon = True
        try:
            observer.schedule(
                _Handler(self.root, self.notify),
                self.root,
                recursive=True,
                event_filter=EVENT_TYPES,
            )
            observer.start()
        except OSError as e:
            if polling:
                raise
            with contextlib.suppress(Exception):
                observer.stop()
            return self._fall_back(e)
        return observer

    def _fall_back(self, error: OSError) -> BaseObserver:
        # inotify watch or instance limit reached: polling still works
        log.warning("inotify unavailable (%s): falling back to polling", error)
        self.polling = True
        return self._start(True)

    def alive(self) -> bool:
        observer = self.observer
        if observer is None or not observer.is_alive():
            return False
        return all(emitter.is_alive() for emitter in getattr(observer, "emitters", ()))

    def ensure_alive(self) -> bool:
        """Restart the observer if it or one of its emitters died; True when restarted."""
        if self.alive():
            return False
        log.warning("the folder observer stopped: starting a new one")
        self.stop()
        self.observer = self._start(self.polling)
        self.restarts += 1
        return True

    def stop(self) -> None:
        observer, self.observer = self.observer, None
        if observer is None:
            return
        with contextlib.suppress(Exception):
            observer.stop()
        if observer.is_alive():
            with contextlib.suppress(Exception):
                observer.join(5)
