"""Sending ready folders: batches into jobs, with the intent recorded first.

Before a batch is submitted, its folders and their claims in the per-dataset
index are written as ``submitting`` with the batch's idempotency key, so a
watcher killed at any point resubmits the same key (and gets the same job) or
finds the claim and does nothing. First attempts go together in one
``add_data_samples`` job; retries go one by one (add, accepting an existing
sample, then link).
"""

from __future__ import annotations

from substra_worker.watcher import readiness as rd
from substra_worker.watcher.batching import ReadyFolder
from substra_worker.watcher.channel import Channel
from substra_worker.watcher.context import S, WatchContext, log
from substra_worker.watcher.state import FolderRecord
from substra_worker.watcher.submit import SubmitRefused, batch_key, sample_key_for


class Sender:
    """Turn batches of ready folders into jobs, and keep the claims in step."""

    def __init__(self, ctx: WatchContext):
        self.ctx = ctx

    def flush(self, now: float, *, force: bool = False) -> None:
        """Send the batches that are due: full ones, and those older than the batch window."""
        ctx = self.ctx
        for chan, items in ctx.batcher.due(now, force=force):
            channel = ctx.channels.get(chan)
            if channel is None:
                for item in items:
                    ctx.drop_pending(item.key)
                    rec = ctx.records.get(item.key)
                    if rec is not None:
                        ctx.set(rec, S.WAITING, "channel became unusable; waiting for it")
                continue
            refs = ctx.datasets.refs(channel)
            if refs is None:
                for item in items:  # hold them until the dataset is registered
                    ctx.batcher.add(chan, channel.batch_size, item, now)
                    rec = ctx.records.get(item.key)
                    if rec is not None:
                        ctx.set(rec, S.WAITING, "waiting for the channel's dataset job")
                continue
            self._submit_batch(channel, items, refs)

    def send_full(self, chan: str) -> None:
        """Send a channel's full batches now, without waiting for the end of the pass.

        Workers would otherwise wait while a long pass looks at thousands of
        folders. A batch that cannot go yet (no usable channel, dataset not on
        its way) stays open: ``flush`` handles it and says why.
        """
        ctx = self.ctx
        channel = ctx.channels.get(chan)
        if channel is None:
            return
        refs = ctx.datasets.refs(channel)
        if refs is None:
            return
        for items in ctx.batcher.take_full(chan, ctx.clock()):
            self._submit_batch(channel, items, refs)

    def _submit_batch(self, channel: Channel, items: list[ReadyFolder], refs: list[str]) -> None:
        """Send ready folders: first attempts together, retries one by one (exist_ok + link)."""
        ctx = self.ctx
        recs = [ctx.records[i.key] for i in items if i.key in ctx.records]
        for item in items:
            ctx.drop_pending(item.key)
        first = [r for r in recs if r.attempt <= 1]
        if first:
            self.send(channel, first, refs, single=False)
        for rec in recs:
            if rec.attempt > 1:
                self.send(channel, [rec], refs, single=True)

    def send(
        self, channel: Channel, recs: list[FolderRecord], refs: list[str], *, single: bool
    ) -> None:
        """Record the intent, then submit one job for ``recs`` (one folder when ``single``)."""
        ctx = self.ctx
        dataset = channel.dataset_key
        if single:
            idem = sample_key_for(dataset, recs[0].content_hash or "", recs[0].attempt)
        else:
            idem = batch_key(dataset, [(r.content_hash or "", r.attempt) for r in recs])
        for rec in recs:
            rec.idempotency_key = idem
            rec.job_id = rec.sample_job_id = None
            ctx.set(rec, S.SUBMITTING, "submitting its job")
        self.claim(dataset, recs, "submitting")
        ctx.save()  # the intent is durable before the job exists
        try:
            if single:
                job_id = self._submit_single(channel, recs[0], refs)
            else:
                job_id = ctx.gateway.add_samples(
                    [r.path for r in recs],
                    refs,
                    test_only=channel.test_only,
                    local=channel.local,
                    idempotency_key=idem,
                )
        except SubmitRefused as e:
            self._refused(channel, recs, e.reason)
            return
        except Exception as e:  # noqa: BLE001 - the queue is unreachable: retried at the next rescan
            log.warning("could not submit %d folder(s), will retry: %s", len(recs), e)
            return
        log.info(
            "channel %s: %d folder(s) in job %s",
            rd.display_name(channel.name),
            len(recs),
            job_id,
        )
        self._after_submit(channel, recs, job_id, "single" if single else "batch")

    def _submit_single(self, channel: Channel, rec: FolderRecord, refs: list[str]) -> str:
        """One folder: add it (an existing sample is fine), then link it to every dataset.

        The link makes sure a sample that was already on the node (under another
        dataset) ends up linked to this channel's dataset too. Returns the job whose
        success means the folder is registered.
        """
        gateway = self.ctx.gateway
        dataset = channel.dataset_key
        h = rec.content_hash or ""
        add_id = gateway.add_sample(
            rec.path,
            refs,
            test_only=channel.test_only,
            local=channel.local,
            idempotency_key=sample_key_for(dataset, h, rec.attempt),
        )
        rec.sample_job_id = add_id
        last = add_id
        for i, ref in enumerate(refs):
            last = gateway.link_samples(
                ref,
                [gateway.ref(add_id)],
                idempotency_key=sample_key_for(dataset, h, rec.attempt, f"link{i}"),
                after=[last],
            )
        return last

    def _refused(self, channel: Channel, recs: list[FolderRecord], reason: str) -> None:
        """The queue refused the job: look at each folder again on its own."""
        ctx = self.ctx
        for rec in recs:
            ctx.drop_pending(rec.key)
            self.release_claim(channel.dataset_key, rec)
        if len(recs) == 1:
            rec = recs[0]
            ctx.set(rec, S.FAILED, reason)
            ctx.next_failed_retry[rec.key] = ctx.clock() + ctx.retry_delay(rec.attempt)
            return
        for rec in recs:
            ctx.set(rec, S.WAITING, f"batch refused ({reason}); looking at it again")
            rec.fingerprint = None
            ctx.folders.evaluate(rec.channel, rec.name)

    def resubmit_interrupted(self) -> None:
        """Folders left ``submitting`` by a watcher that stopped: resubmit the same key."""
        ctx = self.ctx
        groups: dict[str, list[FolderRecord]] = {}
        for rec in ctx.records.values():
            if rec.status == S.SUBMITTING.value:
                groups.setdefault(rec.idempotency_key or rec.key, []).append(rec)
        for recs in groups.values():
            channel = ctx.channels.get(recs[0].channel)
            refs = ctx.datasets.refs(channel) if channel is not None else None
            if channel is None or refs is None:
                for rec in recs:
                    ctx.set(rec, S.WAITING, "interrupted submission; looking at it again")
                    rec.fingerprint = None
                continue
            # same folders, same idempotency keys: the queue answers with the same job
            single = (recs[0].idempotency_key or "").startswith("watch:sample:")
            self.send(channel, recs, refs, single=single)

    def _after_submit(
        self, channel: Channel, recs: list[FolderRecord], job_id: str, kind: str
    ) -> None:
        ctx = self.ctx
        now = ctx.wallclock()
        for rec in recs:
            rec.job_id = job_id
            rec.submitted_at = now
            ctx.set(rec, S.QUEUED, f"in job {job_id}")
        self.claim(channel.dataset_key, recs, "queued")
        ctx.track(job_id, kind, *[r.key for r in recs])

    # --- the once-and-only-once index ----------------------------------------------------

    def claim(self, dataset: str, recs: list[FolderRecord], status: str) -> None:
        """Write the folders' claims on their content for ``dataset``, with ``status``."""
        self.ctx.state.set_claims(
            dataset,
            {
                r.content_hash: {
                    "folder": r.key,
                    "status": status,
                    "job_id": r.job_id,
                    "attempt": r.attempt,
                }
                for r in recs
                if r.content_hash
            },
        )

    def release_claim(self, dataset: str, rec: FolderRecord) -> None:
        """Mark the folder's claim failed (if it still holds it): its content may be sent again."""
        state = self.ctx.state
        if rec.content_hash:
            claim = state.claim(dataset, rec.content_hash)
            if claim and claim.get("folder") == rec.key and claim.get("root") == state.root_id:
                claim.update(status="failed", job_id=rec.job_id, attempt=rec.attempt)
                claim.pop("root", None)
                state.set_claims(dataset, {rec.content_hash: claim})
