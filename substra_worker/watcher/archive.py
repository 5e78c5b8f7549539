"""``--archive-to``: registered folders (and their markers) moved out of the watch root.

User folders are otherwise never modified. The archive must be outside the
root (or hidden in it): an archived folder that the watcher could see would be
looked at again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from substra_worker.watcher import readiness as rd
from substra_worker.watcher.context import WatchContext, ignored
from substra_worker.watcher.state import FolderRecord


def check_archive_dir(root: Path, archive_to: Path) -> None:
    """Raise ValueError when ``archive_to`` is a folder the watcher would watch."""
    rel = os.path.relpath(archive_to, root)
    if rel == "." or (not rel.startswith("..") and not ignored(rel.split(os.sep)[0])):
        raise ValueError(
            "the archive folder must be outside the watch root (or hidden in it, "
            f"like {root / '.archive'}): archived folders would be watched again"
        )


class Archiver:
    """Move registered folders to the archive folder, when there is one."""

    def __init__(self, ctx: WatchContext):
        self.ctx = ctx

    def maybe_archive(self, rec: FolderRecord) -> None:
        """With --archive-to, move a registered folder (and its marker) out of the root."""
        archive_to = self.ctx.archive_to
        if archive_to is None or rec.archived_to:
            return
        src = Path(rec.path)
        if not src.is_dir():
            return
        dest_dir = archive_to / rec.channel
        dest = dest_dir / rec.name
        n = 1
        while dest.exists():
            dest = dest_dir / f"{rec.name}.{n}"
            n += 1
        marker_name = self.ctx.marker
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(dest))
            marker = rd.marker_path(src, marker_name)
            if marker is not None and marker.is_file():
                shutil.move(str(marker), str(dest.with_name(dest.name + marker_name)))
        except OSError as e:
            rec.reason = f"registered; could not archive to {dest}: {e}"
            self.ctx.dirty.add(rec.key)
            return
        rec.archived_to = str(dest)
        self.ctx.dirty.add(rec.key)
