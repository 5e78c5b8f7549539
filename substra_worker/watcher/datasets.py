"""Channels as the watcher keeps them: loaded or unusable (and why), and the datasets they register.

A channel whose ``channel.json`` describes a dataset gets an ``add_dataset``
job first; its samples' jobs refer to that job while it runs, so they wait
for it instead of failing. A dataset job that failed keeps the channel's
folders waiting and is submitted again after a backoff.
"""

from __future__ import annotations

from substra_worker.watcher import readiness as rd
from substra_worker.watcher.channel import Channel, ChannelError, load_channel
from substra_worker.watcher.context import Tracked, WatchContext, log
from substra_worker.watcher.state import ChannelRecord
from substra_worker.watcher.submit import JobView, SubmitRefused, dataset_idempotency_key


class ChannelDatasets:
    """Load channels, record their problems, and register the datasets they describe."""

    def __init__(self, ctx: WatchContext):
        self.ctx = ctx
        self._retry_at: dict[str, float] = {}  # channel -> when to submit its dataset again

    def load(self, name: str) -> Channel | None:
        """Read the channel's config (again); None, with the reason recorded, when unusable."""
        ctx = self.ctx
        crec = ctx.channel_records.get(name) or ChannelRecord(name)
        ctx.channel_records[name] = crec
        try:
            channel = load_channel(ctx.root / name, default_batch_size=ctx.settings.batch_size)
        except ChannelError as e:
            ctx.channels[name] = None
            self.problem(name, e.reason)
            return None
        ctx.channels[name] = channel
        changed = not crec.ok or crec.dataset_keys != list(channel.dataset_keys)
        crec.ok, crec.reason = True, None
        if crec.dataset_keys != list(channel.dataset_keys):
            crec.dataset_keys = list(channel.dataset_keys)
            crec.dataset_job_id, crec.dataset_attempt = None, 0
            crec.dataset_registered = not channel.registers_dataset
            self._retry_at.pop(name, None)
        if changed:
            ctx.state.save_channel(crec)
        return channel

    def problem(self, name: str, reason: str) -> None:
        """The channel cannot be used: record why (once) and log it."""
        ctx = self.ctx
        ctx.channels[name] = None
        crec = ctx.channel_records.get(name) or ChannelRecord(name)
        if crec.ok or crec.reason != reason or name not in ctx.channel_records:
            crec.ok, crec.reason = False, reason
            ctx.channel_records[name] = crec
            ctx.state.save_channel(crec)
            log.warning("channel %s: %s", rd.display_name(name), reason)

    def removed(self, name: str) -> None:
        """The channel folder is gone: forget it and its record."""
        ctx = self.ctx
        ctx.channels.pop(name, None)
        if name in ctx.channel_records:
            ctx.channel_records.pop(name)
            ctx.state.delete_channel(name)

    # --- the dataset a channel describes ---------------------------------------------

    def ensure(self, channel: Channel) -> None:
        """Submit the dataset a channel describes, unless registered, on its way, or just failed."""
        ctx = self.ctx
        crec = ctx.channel_records[channel.name]
        if crec.dataset_registered or crec.dataset_job_id in ctx.tracked:
            return
        if ctx.clock() < self._retry_at.get(channel.name, 0.0):
            return
        self._submit(channel, crec)

    def refs(self, channel: Channel) -> list[str] | None:
        """The data_manager_keys of the channel's samples, or None while they cannot be sent."""
        if not channel.registers_dataset:
            return list(channel.dataset_keys)
        ctx = self.ctx
        crec = ctx.channel_records.get(channel.name)
        if crec is None:
            return None
        if crec.dataset_registered:
            return list(channel.dataset_keys)
        if crec.dataset_job_id is not None and crec.dataset_job_id in ctx.tracked:
            return [ctx.gateway.ref(crec.dataset_job_id)]  # on its way: refer to its job
        return None

    def done(self, chan: str, job_id: str, view: JobView | None) -> None:
        """A dataset job finished (or its record is gone)."""
        ctx = self.ctx
        crec = ctx.channel_records.get(chan)
        if crec is None or crec.dataset_job_id != job_id:
            return
        if view is not None and view.state == "succeeded":
            crec.dataset_registered, crec.reason = True, None
            channel = ctx.channels.get(chan)
            if channel is not None and view.keys and view.keys[0] != channel.dataset_key:
                log.warning(
                    "channel %s: the node keyed its dataset %s, not %s (sha256 of the opener)",
                    chan,
                    view.keys[0],
                    channel.dataset_key,
                )
            ctx.state.save_channel(crec)
            return
        reason = view.error if view is not None else "the job's record is gone (purged)"
        self._failed(crec, f"dataset registration failed: {reason}")

    def _submit(self, channel: Channel, crec: ChannelRecord) -> None:
        ctx = self.ctx
        crec.dataset_attempt += 1
        try:
            job_id = ctx.gateway.add_dataset(
                channel.dataset or {},
                idempotency_key=dataset_idempotency_key(channel.dataset_key, crec.dataset_attempt),
            )
        except SubmitRefused as e:
            self._failed(crec, f"dataset refused: {e.reason}")
            return
        crec.reason = None
        crec.dataset_job_id = job_id
        ctx.tracked[job_id] = Tracked("dataset", channel=channel.name)
        ctx.state.save_channel(crec)

    def _failed(self, crec: ChannelRecord, reason: str) -> None:
        """Keep the channel's folders waiting; submit the dataset again after a backoff."""
        crec.reason = reason
        delay = self.ctx.retry_delay(crec.dataset_attempt)
        self._retry_at[crec.name] = self.ctx.clock() + delay
        log.warning(
            "channel %s: %s; trying again in %.0fs", rd.display_name(crec.name), reason, delay
        )
        self.ctx.state.save_channel(crec)
