"""Watch folders: a folder dropped into a channel of ``watch_dirs/`` becomes a data sample.

See ``service.Watcher`` for the loop, ``channel`` for ``channel.json``,
``readiness`` for when a folder is complete, ``state`` for the per-folder
records, and ``submit`` for the one module that talks to the job queue.
"""

from substra_worker.watcher.state import FolderRecord, FolderStatus, WatchState

__all__ = ["FolderRecord", "FolderStatus", "WatchState"]
