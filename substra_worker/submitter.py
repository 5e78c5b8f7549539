"""``Submitter``: the Client's write methods, each returning a durable ``Job``.

Every call validates its input with the Client's schemas, records the job in
the status store, then sends its message; bad input raises ``InvalidInput``
and leaves nothing behind. Jobs run on Celery workers
(``substra-worker worker``) that call the Client of their own configured node:
producers never hold the node's token.
"""

from __future__ import annotations

import logging
from typing import Any

from substra_worker import references
from substra_worker.envelope import OPERATIONS, invalid, load_envelope
from substra_worker.jobs import (
    FINAL_STATES,
    Job,
    JobNotFound,
    JobState,
    JobStateError,
)
from substra_worker.settings import Settings, get_settings
from substra_worker.status_store import StatusStore

logger = logging.getLogger(__name__)


class Submitter:
    """Submit jobs and read their status.

    ``producer`` names who submits: idempotency keys and references are scoped
    to it. ``settings`` default to the process settings (``SUBSTRA_WORKER_*``);
    only ``redis_url`` (and ``download_root``) matter to a producer.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        producer: str = "default",
        store: StatusStore | None = None,
    ):
        self.settings = settings or get_settings()
        self.producer = producer
        self.store = store or StatusStore.from_settings(self.settings)
        self._app: Any = None

    @property
    def app(self) -> Any:
        """The Celery app messages are sent with (built on first use)."""
        if self._app is None:
            from substra_worker.tasks.app import make_app

            self._app = make_app(self.settings, include_tasks=False)
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
        self.store.close()

    def __enter__(self) -> Submitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the generic entry points --------------------------------------------------------

    def submit(
        self,
        operation: str,
        data: dict[str, Any],
        *,
        exist_ok: bool = False,
        local: bool = True,
        destination: str | None = None,
        target: str | None = None,
        idempotency_key: str | None = None,
        references: list[str] | tuple[str, ...] = (),
        follow: bool = False,
    ) -> Job:
        """Submit ``operation`` (a Client method name) with its payload; return the job.

        ``data`` is the method's input dict for ``add_*`` calls, and its named
        arguments otherwise (see ``substra_worker.envelope``). Values may be
        ``Job`` objects or reference strings standing for another job's key.
        """
        envelope: dict[str, Any] = {
            "operation": operation,
            "payload": data,
            "options": {"exist_ok": exist_ok, "local": local, "destination": destination},
            "target": target,
            "idempotency_key": idempotency_key,
            "references": list(references),
            "follow": follow,
        }
        return self.submit_envelope(envelope)

    def submit_envelope(self, envelope: dict[str, Any], *, producer: str | None = None) -> Job:
        """Submit a job envelope (the JSON form the HTTP API and the CLI read).

        The job is recorded as ``producer`` (default: this submitter's), whatever
        the envelope says: references and idempotency keys are scoped to it. The
        returned ``Job`` holds the record as written (``refresh()`` reloads it).
        """
        envelope = dict(envelope) if isinstance(envelope, dict) else envelope
        if isinstance(envelope, dict):
            envelope["producer"] = producer or self.producer
        env = load_envelope(envelope, download_root=self.settings.download_root)
        state, error = self._initial_state(env)
        record, created = self.store.create_record(
            env,
            state,
            message="submitted" if error is None else error["message"],
            error=error,
        )
        if record is None:  # the existing job this submission names was purged meanwhile
            raise JobNotFound("the existing job for this submission is gone (purged)")
        job = Job(self.store, record)
        if not created:
            if job.state is JobState.QUEUED and not job.attempts and record.get("sent") != "1":
                # its producer died between the record and the message: send it now
                self._send_first(job.id, int(record.get("dispatch") or 1))
            return job
        if state is JobState.QUEUED:
            self._send_first(job.id, 1)
            record["sent"] = "1"  # the returned job is the record as stored
        elif state is JobState.WAITING:
            for ref_id in env["references"]:
                self.store.add_waiter(ref_id, job.id)
            # a reference may have finished between the check and add_waiter
            references.release(self.store, job.id, self._send)
            job.refresh()
        return job

    def _initial_state(self, env: dict[str, Any]) -> tuple[JobState, dict[str, Any] | None]:
        refs = env["references"]
        errors: dict[str, list[str]] = {}
        for ref_id in refs:
            fields = self.store.get_fields(ref_id, "state", "producer")
            if fields["state"] is None:
                errors.setdefault("references", []).append(f"no job {ref_id}")
            elif fields["producer"] != env["producer"]:
                errors.setdefault("references", []).append(
                    f"job {ref_id} belongs to another producer"
                )
        if errors:
            raise invalid(errors)
        if not refs:
            return JobState.QUEUED, None
        ready, error = references.reference_error(self.store, refs)
        if error is not None:
            return JobState.FAILED, error
        return (JobState.QUEUED if ready else JobState.WAITING), None

    def _send_first(self, job_id: str, dispatch: int) -> None:
        """Send a new job's message, then mark the record sent (resubmits check it)."""
        self._send(job_id, dispatch)
        self.store.set_fields(job_id, sent="1")

    def _send(self, job_id: str, dispatch: int) -> None:
        from substra_worker.tasks.app import send_job

        try:
            send_job(self.app, job_id, dispatch)
        except Exception as e:
            # recorded but not sent: fail it so that it is visible and retryable
            self.store.transition(
                job_id,
                JobState.FAILED,
                allowed=[JobState.QUEUED],
                message="could not send the job's message",
                fields={
                    "error": {
                        "type": type(e).__name__,
                        "message": f"could not send the job's message: {e}",
                        "retryable": True,
                    }
                },
            )
            raise

    # --- reading jobs ----------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job:
        """The job with this id; raises ``JobNotFound``."""
        return Job.load(self.store, job_id)

    def list_jobs(
        self,
        state: JobState | str | None = None,
        operation: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs newest first, optionally of one state and/or one operation."""
        if operation is not None and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        records = self.store.list(
            JobState(state) if state is not None else None, operation, limit=limit, offset=offset
        )
        return [Job(self.store, r) for r in records]

    def stats(self, by_operation: bool = False) -> dict[str, Any]:
        """Number of jobs per state (and per operation and state with ``by_operation``)."""
        return self.store.stats(by_operation=by_operation)

    # --- acting on jobs --------------------------------------------------------------------

    def retry(self, job_id: str) -> Job:
        """Queue a failed job again (its references are re-checked first)."""
        job = self.get_job(job_id)
        if job.state is not JobState.FAILED:
            raise JobStateError(f"job {job_id} is {job.state.value}; only failed jobs are retried")
        refs = job.references
        ready, error = references.reference_error(self.store, refs)
        if error is not None:
            raise JobStateError(f"cannot retry job {job_id}: {error['message']}")
        if ready:
            t = self.store.transition(
                job_id,
                JobState.QUEUED,
                allowed=[JobState.FAILED],
                message="retried",
                fields={"error": None, "run_attempts": "0", "finished_at": None},
                dispatch=True,
            )
            if t.ok:
                self._send(job_id, t.dispatch)
        else:
            t = self.store.transition(
                job_id,
                JobState.WAITING,
                allowed=[JobState.FAILED],
                message="retried; waiting for references",
                fields={"error": None, "run_attempts": "0", "finished_at": None},
            )
            if t.ok:
                for ref_id in refs:
                    self.store.add_waiter(ref_id, job_id)
                references.release(self.store, job_id, self._send)
        if not t.ok:
            raise JobStateError(f"job {job_id} changed state meanwhile ({t.previous})")
        return job.refresh()

    def cancel(self, job_id: str) -> Job:
        """Cancel a job that has not started (queued or waiting); its waiters fail."""
        job = self.get_job(job_id)
        t = self.store.transition(
            job_id,
            JobState.CANCELED,
            allowed=[JobState.QUEUED, JobState.WAITING],
            message="canceled",
        )
        if not t.ok:
            raise JobStateError(
                f"job {job_id} is {t.previous}; only queued or waiting jobs can be canceled"
            )
        references.release(self.store, job_id, self._send)
        return job.refresh()

    def purge(self, states: Any = FINAL_STATES, older_than: float = 0.0) -> int:
        """Delete finished job records (failed ones included); return how many."""
        return self.store.purge(states, older_than)

    # --- one method per Client write call ----------------------------------------------------

    def add_data_sample(self, data, local=True, exist_ok=False, **job_options) -> Job:
        """Register one data sample folder (see ``Client.add_data_sample``)."""
        return self.submit("add_data_sample", data, local=local, exist_ok=exist_ok, **job_options)

    def add_data_samples(self, data, local=True, **job_options) -> Job:
        """Register many sample folders, in batches of ``settings.batch_size``.

        The job's result lists each sample's key, in the order of ``paths``.
        """
        return self.submit("add_data_samples", data, local=local, **job_options)

    def add_dataset(self, data, exist_ok=False, **job_options) -> Job:
        """Register a dataset (see ``Client.add_dataset``)."""
        return self.submit("add_dataset", data, exist_ok=exist_ok, **job_options)

    def add_objective(self, data, exist_ok=False, **job_options) -> Job:
        """Register an objective (see ``Client.add_objective``)."""
        return self.submit("add_objective", data, exist_ok=exist_ok, **job_options)

    def add_algo(self, data, exist_ok=False, **job_options) -> Job:
        """Register an algo (see ``Client.add_algo``)."""
        return self.submit("add_algo", data, exist_ok=exist_ok, **job_options)

    def add_aggregate_algo(self, data, exist_ok=False, **job_options) -> Job:
        """Register an aggregate algo (see ``Client.add_aggregate_algo``)."""
        return self.submit("add_aggregate_algo", data, exist_ok=exist_ok, **job_options)

    def add_composite_algo(self, data, exist_ok=False, **job_options) -> Job:
        """Register a composite algo (see ``Client.add_composite_algo``)."""
        return self.submit("add_composite_algo", data, exist_ok=exist_ok, **job_options)

    def add_traintuple(self, data, exist_ok=False, **job_options) -> Job:
        """Create a traintuple (see ``Client.add_traintuple``); ``follow=True`` tracks it."""
        return self.submit("add_traintuple", data, exist_ok=exist_ok, **job_options)

    def add_aggregatetuple(self, data, exist_ok=False, **job_options) -> Job:
        """Create an aggregatetuple (see ``Client.add_aggregatetuple``)."""
        return self.submit("add_aggregatetuple", data, exist_ok=exist_ok, **job_options)

    def add_composite_traintuple(self, data, exist_ok=False, **job_options) -> Job:
        """Create a composite traintuple (see ``Client.add_composite_traintuple``)."""
        return self.submit("add_composite_traintuple", data, exist_ok=exist_ok, **job_options)

    def add_testtuple(self, data, exist_ok=False, **job_options) -> Job:
        """Create a testtuple (see ``Client.add_testtuple``)."""
        return self.submit("add_testtuple", data, exist_ok=exist_ok, **job_options)

    def add_compute_plan(self, data, **job_options) -> Job:
        """Create a compute plan (see ``Client.add_compute_plan``); ``follow=True`` tracks it.

        The job id is stamped into the plan's metadata (``substra_worker_job``) so
        that a retry finds the plan an uncertain attempt created instead of
        creating a second one.
        """
        return self.submit("add_compute_plan", data, **job_options)

    def update_compute_plan(self, compute_plan_id, data, **job_options) -> Job:
        """Add tuples to a compute plan (see ``Client.update_compute_plan``)."""
        payload = {"compute_plan_id": compute_plan_id, "data": data}
        return self.submit("update_compute_plan", payload, **job_options)

    def cancel_compute_plan(self, compute_plan_id, **job_options) -> Job:
        """Cancel a compute plan (see ``Client.cancel_compute_plan``)."""
        return self.submit(
            "cancel_compute_plan", {"compute_plan_id": compute_plan_id}, **job_options
        )

    def link_dataset_with_objective(self, dataset_key, objective_key, **job_options) -> Job:
        """Link a dataset with an objective (see ``Client.link_dataset_with_objective``)."""
        payload = {"dataset_key": dataset_key, "objective_key": objective_key}
        return self.submit("link_dataset_with_objective", payload, **job_options)

    def link_dataset_with_data_samples(self, dataset_key, data_sample_keys, **job_options) -> Job:
        """Link samples with a dataset (see ``Client.link_dataset_with_data_samples``)."""
        payload = {"dataset_key": dataset_key, "data_sample_keys": list(data_sample_keys)}
        return self.submit("link_dataset_with_data_samples", payload, **job_options)

    def download_dataset(self, key, destination_folder, **job_options) -> Job:
        """Download a dataset's opener into ``destination_folder`` (as ``opener.py``)."""
        return self._download("download_dataset", key, destination_folder, job_options)

    def download_algo(self, key, destination_folder, **job_options) -> Job:
        """Download an algo's archive into ``destination_folder``."""
        return self._download("download_algo", key, destination_folder, job_options)

    def download_aggregate_algo(self, key, destination_folder, **job_options) -> Job:
        """Download an aggregate algo's archive into ``destination_folder``."""
        return self._download("download_aggregate_algo", key, destination_folder, job_options)

    def download_composite_algo(self, key, destination_folder, **job_options) -> Job:
        """Download a composite algo's archive into ``destination_folder``."""
        return self._download("download_composite_algo", key, destination_folder, job_options)

    def download_objective(self, key, destination_folder, **job_options) -> Job:
        """Download an objective's metrics archive into ``destination_folder``."""
        return self._download("download_objective", key, destination_folder, job_options)

    def _download(self, operation: str, key: Any, folder: Any, options: dict[str, Any]) -> Job:
        return self.submit(operation, {"key": key}, destination=str(folder), **options)


__all__ = ["Submitter", "Job", "JobState", "JobNotFound"]
