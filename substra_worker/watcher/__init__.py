"""Watch folders: a folder dropped into a channel of ``watch_dirs/`` becomes a data sample.

``service.Watcher`` is the facade and its loop. Its parts: ``scan`` (where to
look), ``folders`` (what becomes of one folder), ``sending`` (batches into
jobs, once only), ``tracking`` (what a finished job means), ``datasets``
(channels and the datasets they register), ``archive`` (``--archive-to``),
sharing a ``context.WatchContext``. Below them: ``channel`` reads
``channel.json``, ``readiness`` says when a folder is complete, ``batching``
groups ready folders, ``observer`` reports changes, ``state``
keeps the per-folder records, and ``submit`` is the one module that talks to
the job queue.
"""

from substra_worker.watcher.state import FolderRecord, FolderStatus, WatchState

__all__ = ["FolderRecord", "FolderStatus", "WatchState"]
