"""Jobs as producers see them: their states, the ``Job`` handle, and the job errors."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from substra_worker.status_store import StatusStore


class JobState(StrEnum):
    """Where a job is in its life; the values are what the status store records."""

    QUEUED = "queued"  # recorded, message sent, waiting for a worker
    WAITING = "waiting"  # waiting for the jobs it references to succeed (no message yet)
    RUNNING = "running"  # a worker is running an attempt
    RETRYING = "retrying"  # an attempt failed with a retryable error; the next one is scheduled
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # kept until retried or purged
    CANCELED = "canceled"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED})
ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.WAITING, JobState.RUNNING, JobState.RETRYING})


class JobError(Exception):
    """Raised for every error of the job API; base of the classes below."""


class JobNotFound(JobError, KeyError):
    """Raised when no job record has that id (never submitted, purged or expired)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job not found"


class JobStateError(JobError):
    """Raised when an action does not fit the job's state (retry a job that did not fail)."""


class JobFailed(JobError):
    """Raised by ``Job.wait()`` when the job failed; ``error`` is its recorded error."""

    def __init__(self, job_id: str, error: dict[str, Any] | None):
        self.job_id = job_id
        self.error = error or {}
        kind = self.error.get("type") or "Error"
        message = self.error.get("message") or "no message"
        super().__init__(f"job {job_id} failed: {kind}: {message}")


class JobCanceled(JobError):
    """Raised by ``Job.wait()`` when the job was canceled."""


class Job:
    """A handle on one job record; ``refresh()`` reloads it from the status store."""

    def __init__(self, store: StatusStore, record: dict[str, Any]):
        self._store = store
        self._record = record

    @classmethod
    def load(cls, store: StatusStore, job_id: str) -> Job:
        record = store.load(job_id)
        if record is None:
            raise JobNotFound(f"no job {job_id}")
        return cls(store, record)

    # --- the record --------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._record["id"]

    @property
    def operation(self) -> str:
        return self._record["operation"]

    @property
    def state(self) -> JobState:
        return JobState(self._record["state"])

    @property
    def result(self) -> dict[str, Any] | None:
        """``{"key", "keys", "answer"}`` once succeeded: the asset key(s) and the node's answer."""
        return self._record.get("result")

    @property
    def key(self) -> str | None:
        """The key of the asset the job produced, if any."""
        return (self.result or {}).get("key")

    @property
    def keys(self) -> list[str]:
        """Every key the job produced (one per sample for ``add_data_samples``)."""
        result = self.result or {}
        if result.get("keys") is not None:
            return list(result["keys"])
        return [result["key"]] if result.get("key") else []

    @property
    def error(self) -> dict[str, Any] | None:
        """``{"type", "message", "retryable", ...}`` when the last attempt failed."""
        return self._record.get("error")

    @property
    def attempts(self) -> list[dict[str, Any]]:
        """Each attempt: number, start, end, worker, outcome, error class and message."""
        return self._record.get("attempts", [])

    @property
    def history(self) -> list[dict[str, Any]]:
        """Each state change: ``{"at", "state", "message"}``."""
        return self._record.get("history", [])

    @property
    def progress(self) -> dict[str, Any] | None:
        """For followed tuples and plans: status, doneCount, tupleCount; for bulk: done, total."""
        return self._record.get("progress")

    @property
    def references(self) -> list[str]:
        return list(self._record.get("envelope", {}).get("references") or [])

    @property
    def envelope(self) -> dict[str, Any]:
        return self._record.get("envelope", {})

    @property
    def created_at(self) -> float:
        return float(self._record.get("created_at") or 0)

    @property
    def updated_at(self) -> float:
        return float(self._record.get("updated_at") or 0)

    def ref(self, path: str | None = None) -> str:
        """A payload value that refers to this job's result (see ``references``)."""
        from substra_worker.references import make_ref

        return make_ref(self.id, path)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-friendly record (what the CLI and the HTTP API print)."""
        return dict(self._record)

    # --- actions -----------------------------------------------------------------------

    def refresh(self) -> Job:
        """Reload the record from the status store."""
        record = self._store.load(self.id)
        if record is None:
            raise JobNotFound(f"no job {self.id}")
        self._record = record
        return self

    def wait(
        self, timeout: float | None = None, interval: float = 0.2, *, follow: bool = False
    ) -> dict[str, Any] | None:
        """Block until the job is final; return its result or raise with its error.

        With ``follow=True`` (for a job submitted with ``follow``), also wait until
        the tuple or plan it created is final on the node (see ``progress``).
        Raises ``JobFailed``, ``JobCanceled``, or ``TimeoutError`` when ``timeout``
        seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(0.05, interval)
        while True:
            self.refresh()
            state = self.state
            if state is JobState.SUCCEEDED and not (
                follow and self.envelope.get("follow") and not (self.progress or {}).get("final")
            ):
                return self.result
            if state is JobState.FAILED:
                raise JobFailed(self.id, self.error)
            if state is JobState.CANCELED:
                raise JobCanceled(f"job {self.id} was canceled")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} still {state.value} after {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, interval)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.operation} {self.state.value}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)
