"""Where to look: full rescans of the root, channel scans, and the entries events name.

A full rescan (at start, then every ``rescan_interval``) looks at every channel
and folder: it reconciles the records with the disk and is the net for events
the kernel dropped, and for changes inside folders, which are not watched.
Scanning a channel has it watched (before it is listed), and a channel found
gone is no longer watched. Between rescans, events say where to look. Every folder
renamed into a channel also modifies the channel folder; when the same events
name the entries that changed, those entries are looked at, not the whole
channel again.
"""

from __future__ import annotations

import os
import stat

from substra_worker.watcher import readiness as rd
from substra_worker.watcher.channel import CONFIG_NAME, config_stamp
from substra_worker.watcher.context import S, WatchContext, ignored, log


class Scanner:
    """Decide which channels and entries to look at, and look at them."""

    def __init__(self, ctx: WatchContext):
        self.ctx = ctx

    def rescan(self) -> None:
        """Look at every channel and folder (reconciliation, and a net for lost events)."""
        ctx = self.ctx
        try:
            names = sorted(os.listdir(ctx.root))
        except OSError as e:
            log.error("cannot list the watch root %s: %s", ctx.root, e)
            return
        present = set()
        for name in names:
            if ignored(name):
                continue
            present.add(name)
            self.scan_channel(name)
        for name in list(ctx.channels):
            if name not in present:
                self.scan_channel(name)
        if ctx.observer is not None:
            ctx.unwatch_channels(ctx.observer.channels - present)
        for key, rec in list(ctx.records.items()):
            if rec.channel not in present and not rec.archived_to:
                ctx.folders.gone(key)
        self._prune()

    def look_at_events(self, channels: set[str], entries: set[tuple[str, str]]) -> None:
        """Look where events happened: a channel (scanned whole) or entries of a channel."""
        by_channel: dict[str, list[str]] = {}
        for chan, entry in entries:
            by_channel.setdefault(chan, []).append(entry)
        scanned = set()
        for name in channels:
            if name in by_channel and self._unchanged(name):
                continue  # its entries' events say which folders changed
            self.scan_channel(name)
            scanned.add(name)
        for chan, names in by_channel.items():
            if chan not in scanned:
                self._look_at_entries(chan, names)

    def look_at_due(self) -> None:
        """Look again at the settling folders whose quiet period (or max wait) may be over."""
        ctx = self.ctx
        for key in ctx.readiness.folders():
            due = ctx.readiness.next_due(key)
            if due is not None and due <= ctx.clock():
                chan, _, name = key.partition("/")
                ctx.folders.evaluate(chan, name)
                again = ctx.readiness.next_due(key)
                if again is not None and again <= ctx.clock():
                    ctx.readiness.forget(key)  # not looked at (channel unusable...): rescans will

    def _look_at_entries(self, chan: str, entries: list[str]) -> None:
        ctx = self.ctx
        folders: dict[str, None] = {}  # each folder once, though its marker changed too
        for entry in entries:
            if entry == CONFIG_NAME or self._is_reserved(chan, entry) or chan not in ctx.channels:
                # its config or dataset files changed, or a new channel: look at all of it
                self.scan_channel(chan)
                return
            folders[self.folder_of(chan, entry)] = None
        for name in folders:
            ctx.folders.evaluate(chan, name)

    def _unchanged(self, name: str) -> bool:
        """Whether a loaded channel is still a folder with the same config.

        Then an event on the channel folder itself only echoes entries coming or
        going, which their own events name. Its dataset is looked after as a
        scan would.
        """
        ctx = self.ctx
        channel = ctx.channels.get(name)
        if channel is None:
            return False
        path = ctx.root / name
        try:
            st = os.stat(path)
        except OSError:
            return False
        if not stat.S_ISDIR(st.st_mode) or config_stamp(path) != channel.config_stamp:
            return False
        if channel.registers_dataset:
            ctx.datasets.ensure(channel)
        return True

    def scan_channel(self, name: str) -> None:
        """Look at a channel: its config, then every entry in it; records of missing ones go."""
        ctx = self.ctx
        if ignored(name):
            return
        path = ctx.root / name
        try:
            st = os.stat(path)
        except FileNotFoundError:
            ctx.unwatch_channels({name})
            ctx.datasets.removed(name)
            for key in [k for k, r in ctx.records.items() if r.channel == name]:
                ctx.folders.gone(key)
            return
        except OSError as e:
            ctx.datasets.problem(name, f"cannot read the channel: {e.strerror}")
            return
        if not stat.S_ISDIR(st.st_mode):
            # files at the root are not channels: the place for a README or a script
            ctx.unwatch_channels({name})
            ctx.channels.pop(name, None)
            return
        problem = rd.name_problem(name)
        if problem:
            ctx.datasets.problem(name, "channel " + problem)
            return
        ctx.watch_channel(name)  # before it is listed: nothing arriving meanwhile is missed
        channel = ctx.channels.get(name)
        if channel is None or channel.config_stamp != config_stamp(path):
            channel = ctx.datasets.load(name)
        if channel is None:
            return
        if channel.registers_dataset:
            ctx.datasets.ensure(channel)
        try:
            entries = sorted(os.listdir(path))
        except OSError as e:
            ctx.datasets.problem(name, f"cannot list the channel: {e.strerror}")
            return
        seen: dict[str, None] = {}  # each folder once, though its marker is listed too
        for entry in entries:
            if ignored(entry) or entry in channel.reserved:
                continue
            seen[self.folder_of(name, entry)] = None
        for target in seen:
            ctx.folders.evaluate(name, target)
        for key, rec in list(ctx.records.items()):
            if rec.channel == name and rec.name not in seen and not rec.archived_to:
                ctx.folders.gone(key)

    def folder_of(self, chan: str, entry: str) -> str:
        """The folder an entry stands for: itself, or the folder a marker file marks."""
        marker = self.ctx.marker
        if marker and entry.endswith(marker) and len(entry) > len(marker):
            base = entry[: -len(marker)]
            if not (self.ctx.root / chan / entry).is_dir():
                return base
        return entry

    def _is_reserved(self, chan: str, entry: str) -> bool:
        channel = self.ctx.channels.get(chan)
        return channel is not None and entry in channel.reserved

    def _prune(self) -> None:
        """Forget records of folders long gone (kept as long as finished jobs are)."""
        ctx = self.ctx
        horizon = ctx.wallclock() - ctx.settings.result_ttl
        for key, rec in list(ctx.records.items()):
            if (
                rec.updated_at < horizon
                and rec.status not in (S.SUBMITTING.value, S.QUEUED.value)
                and not os.path.lexists(rec.path)
            ):
                ctx.forget(key)
