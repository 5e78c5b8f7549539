"""The jobs the watcher waits for, and what their outcome means for its folders.

A batch that succeeded registers its folders (those whose content the node
returned); a batch that failed is split into single-folder jobs, so one bad
folder does not hold back the others; a single folder that failed is recorded
failed with its job's error and tried again after a backoff.
"""

from __future__ import annotations

from substra_worker.watcher.context import S, Tracked, WatchContext, log
from substra_worker.watcher.state import FolderRecord


class JobTracker:
    """Read back the tracked jobs and apply their outcome."""

    def __init__(self, ctx: WatchContext):
        self.ctx = ctx

    def poll(self) -> None:
        """Read every tracked job once; act on those that finished."""
        ctx = self.ctx
        for job_id in list(ctx.tracked):
            tracked = ctx.tracked[job_id]
            view = ctx.gateway.job(job_id)
            if view is not None and view.active:
                continue
            del ctx.tracked[job_id]
            if tracked.kind == "dataset":
                ctx.datasets.done(tracked.channel or "", job_id, view)
                continue
            recs = [ctx.records[k] for k in tracked.folders if k in ctx.records]
            recs = [r for r in recs if r.job_id == job_id]
            if not recs:
                continue
            if view is None:
                self._failed(tracked, recs, job_id, "job record not found (purged or expired)")
            elif view.state == "succeeded":
                self._succeeded(tracked, recs, job_id, set(view.keys))
            else:
                self._failed(tracked, recs, job_id, view.error or "job failed")

    def _succeeded(
        self, tracked: Tracked, recs: list[FolderRecord], job_id: str, keys: set[str]
    ) -> None:
        ctx = self.ctx
        now = ctx.wallclock()
        registered: dict[str, list[FolderRecord]] = {}
        for rec in recs:
            if tracked.kind == "single" or rec.content_hash in keys:
                rec.sample_key = rec.content_hash
                rec.registered_at = now
                ctx.set(rec, S.REGISTERED, None)
                registered.setdefault(_dataset_of(rec), []).append(rec)
                ctx.archiver.maybe_archive(rec)
            else:
                ctx.set(
                    rec,
                    S.FAILED,
                    f"job {job_id} registered other content: the folder changed while it ran",
                )
                rec.fingerprint = None  # look at its new content
                ctx.sender.release_claim(_dataset_of(rec), rec)
        for dataset, group in registered.items():
            ctx.sender.claim(dataset, group, "registered")

    def _failed(self, tracked: Tracked, recs: list[FolderRecord], job_id: str, reason: str) -> None:
        ctx = self.ctx
        channel = ctx.channels.get(recs[0].channel)
        if tracked.kind == "batch" and channel is not None:
            refs = ctx.datasets.refs(channel)
            log.info(
                "batch job %s failed (%s): sending its %d folders one by one",
                job_id,
                reason,
                len(recs),
            )
            for rec in recs:
                rec.failures.append({"at": ctx.wallclock(), "reason": reason, "job_id": job_id})
                if refs is None:
                    ctx.sender.release_claim(channel.dataset_key, rec)
                    rec.fingerprint = None
                    ctx.set(rec, S.WAITING, f"batch failed ({reason}); waiting for the dataset")
                    continue
                ctx.sender.send(channel, [rec], refs, single=True)
            return
        for rec in recs:
            if tracked.kind == "single" and rec.sample_job_id and rec.sample_job_id != job_id:
                first = ctx.gateway.job(rec.sample_job_id)
                if first is not None and first.state == "failed" and first.error:
                    reason = first.error  # the add failed: its error, not the link's
            ctx.set(rec, S.FAILED, reason)
            ctx.sender.release_claim(_dataset_of(rec), rec)
            ctx.next_failed_retry[rec.key] = ctx.clock() + ctx.retry_delay(rec.attempt)
            self._reopen_duplicates_of(rec.key)

    def _reopen_duplicates_of(self, key: str) -> None:
        """Folders set aside as copies of a folder whose job failed get their own chance."""
        ctx = self.ctx
        for rec in list(ctx.records.values()):
            if rec.status == S.DUPLICATE.value and rec.duplicate_of == key:
                rec.fingerprint = None
                rec.duplicate_of = None
                ctx.set(rec, S.WAITING, f"the folder it duplicated ({key}) failed")
                ctx.folders.evaluate(rec.channel, rec.name)


def _dataset_of(rec: FolderRecord) -> str:
    """The dataset a folder's claim is kept under (its first dataset)."""
    return rec.dataset_keys[0] if rec.dataset_keys else ""
