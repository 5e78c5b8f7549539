"""The watcher's only door into the job queue (``substra_worker.submitter.Submitter``).

Every call the watcher makes into the queue goes through ``JobGateway``, so a
change in the queue's API is one edit here. The gateway speaks in the
watcher's terms: register a dataset, register a batch of folders, register one
folder (accepting an existing sample), link samples to a dataset, and read a
job's outcome as a small ``JobView``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from substra_worker.jobs import ACTIVE_STATES, JobNotFound, JobState
from substra_worker.references import make_ref
from substra_worker.sdk.exceptions import InvalidInput
from substra_worker.settings import Settings

PRODUCER = "watcher"  # the producer name the watcher's jobs are recorded under


class SubmitRefused(Exception):
    """Raised when the queue refuses a job at submit time (bad payload, missing path)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class JobView:
    """A job's outcome as the watcher needs it."""

    id: str
    state: str  # "active", "succeeded" or "failed" (a canceled job counts as failed)
    keys: tuple[str, ...] = ()
    error: str | None = None

    @property
    def active(self) -> bool:
        return self.state == "active"


def batch_key(dataset_key: str, items: Sequence[tuple[str, int]]) -> str:
    """Idempotency key of a batch: the dataset and each (content hash, attempt) it holds."""
    text = dataset_key + "|" + ",".join(sorted(f"{h}:{a}" for h, a in items))
    return "watch:batch:" + hashlib.sha256(text.encode()).hexdigest()


def sample_key_for(dataset_key: str, content_hash: str, attempt: int, what: str = "sample") -> str:
    """Idempotency key of one folder's job: channel dataset + content hash (+ attempt)."""
    return f"watch:{what}:{dataset_key}:{content_hash}:{attempt}"


def dataset_idempotency_key(dataset_key: str, attempt: int) -> str:
    return f"watch:dataset:{dataset_key}:{attempt}"


class JobGateway:
    """Submit the watcher's jobs and read them back, through a ``Submitter``."""

    def __init__(self, submitter: Any):
        self.submitter = submitter

    @classmethod
    def from_settings(cls, settings: Settings) -> JobGateway:
        """A gateway on a new ``Submitter`` whose jobs are recorded as the watcher's."""
        from substra_worker.submitter import Submitter

        return cls(Submitter(settings, producer=PRODUCER))

    @property
    def redis(self) -> Any:
        """The Redis client of the status store: the watcher keeps its state next to it."""
        return self.submitter.store.redis

    @property
    def prefix(self) -> str:
        """The status store's key prefix, shared by the watcher's keys."""
        return self.submitter.store.prefix

    def close(self) -> None:
        self.submitter.close()

    # --- submissions -----------------------------------------------------------------

    def add_dataset(self, dataset: dict, *, idempotency_key: str) -> str:
        """Register a channel's dataset (an existing one with the same opener is fine)."""
        data = {k: v for k, v in dataset.items() if v is not None}
        return self._submit("add_dataset", data, exist_ok=True, idempotency_key=idempotency_key)

    def add_samples(
        self,
        paths: Sequence[str],
        dataset_keys: Sequence[str],
        *,
        test_only: bool,
        local: bool,
        idempotency_key: str,
    ) -> str:
        """One ``add_data_samples`` job for several folders (keys may be references)."""
        data = {
            "paths": list(paths),
            "data_manager_keys": list(dataset_keys),
            "test_only": test_only,
        }
        return self._submit("add_data_samples", data, local=local, idempotency_key=idempotency_key)

    def add_sample(
        self,
        path: str,
        dataset_keys: Sequence[str],
        *,
        test_only: bool,
        local: bool,
        idempotency_key: str,
    ) -> str:
        """One ``add_data_sample`` job that accepts a sample already on the node."""
        data = {"path": path, "data_manager_keys": list(dataset_keys), "test_only": test_only}
        return self._submit(
            "add_data_sample", data, local=local, exist_ok=True, idempotency_key=idempotency_key
        )

    def link_samples(
        self,
        dataset_key: str,
        sample_keys: Sequence[str],
        *,
        idempotency_key: str,
        after: Sequence[str] = (),
    ) -> str:
        """Link samples (keys or references) to a dataset, once the jobs in ``after`` succeeded."""
        data = {"dataset_key": dataset_key, "data_sample_keys": list(sample_keys)}
        return self._submit(
            "link_dataset_with_data_samples",
            data,
            idempotency_key=idempotency_key,
            references=list(after),
        )

    @staticmethod
    def ref(job_id: str) -> str:
        """A payload value standing for the key(s) ``job_id`` produces."""
        return make_ref(job_id)

    # --- reading ---------------------------------------------------------------------

    def job(self, job_id: str) -> JobView | None:
        """The job's outcome, or None when no record has that id (purged or never made)."""
        try:
            job = self.submitter.get_job(job_id)
        except JobNotFound:
            return None
        state = job.state
        if state in ACTIVE_STATES:
            return JobView(job_id, "active")
        if state is JobState.SUCCEEDED:
            return JobView(job_id, "succeeded", tuple(job.keys))
        if state is JobState.CANCELED:
            return JobView(job_id, "failed", error="job was canceled")
        return JobView(job_id, "failed", error=describe_error(job.error))

    # --- internals -------------------------------------------------------------------

    def _submit(self, operation: str, data: dict, **options: Any) -> str:
        try:
            job = self.submitter.submit(operation, data, **options)
        except InvalidInput as e:
            raise SubmitRefused(f"refused by the queue: {e}") from e
        return job.id


def describe_error(error: dict | None) -> str:
    """One line from a job's recorded error: ``Type: message``."""
    if not error:
        return "job failed without a recorded error"
    kind = error.get("type") or "Error"
    message = error.get("message") or ""
    return f"{kind}: {message}".strip().rstrip(":")
