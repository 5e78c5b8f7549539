"""The task that runs one job: from its record to its outcome, whatever happens in between.

A message carries only the job id (and a dispatch number for tracing); the
payload is read from the status store. One attempt:

1. load the record; a finished, canceled or waiting job is left alone;
2. take the job's lease (one worker at a time per job; a lease whose holder
   died on this host is taken over, one held elsewhere is looked at again later);
3. record ``running`` and the attempt (a job found ``running`` was delivered
   again after its worker died: that attempt is recorded ``lost``);
4. resolve references, call the Client of this worker's node (``effects``);
5. record ``succeeded`` with the result, or ``retrying`` and send the next
   attempt with exponential backoff and jitter, or ``failed``;
6. release the jobs that wait on this one.

The message is acknowledged only when the task returns (late ack), so a
worker that dies at any point leaves it to be delivered again.
"""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import threading
import time
import uuid
from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import worker_ready
from celery.utils.log import get_task_logger

from substra_worker import references
from substra_worker.envelope import OPERATIONS
from substra_worker.jobs import JobState
from substra_worker.sdk.exceptions import AuthenticationError
from substra_worker.settings import Settings, get_settings
from substra_worker.status_store import StatusStore
from substra_worker.tasks import effects
from substra_worker.tasks.app import RUN_JOB, app, send_follow, send_job
from substra_worker.tasks.clients import can_login, get_client, relogin, secrets_of
from substra_worker.tasks.errors import PermanentError, describe
from substra_worker.tasks.recovery import start_sweeper

logger = get_task_logger(__name__)

LEASE_TTL = 30.0  # seconds: a job's lease lapses this long after its worker stops refreshing it

_stores: dict[int, StatusStore] = {}


def get_store(settings: Settings | None = None) -> StatusStore:
    """This process's status store (one per process: connections do not survive fork)."""
    pid = os.getpid()
    store = _stores.get(pid)
    if store is None:
        store = _stores[pid] = StatusStore.from_settings(settings or get_settings())
    return store


def sender(job_id: str, dispatch: int) -> None:
    send_job(app, job_id, dispatch)


def backoff(settings: Settings, attempt: int) -> float:
    """Seconds before retry number ``attempt``: exponential, capped, with equal jitter."""
    ceiling = min(settings.retry_backoff_max, settings.retry_backoff * 2 ** max(0, attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


@worker_ready.connect
def _start_recovery(**kwargs: Any) -> None:
    """Each worker sweeps for jobs whose message was lost (see ``recovery``)."""
    start_sweeper(get_store, sender)


class JobTask(Task):
    """Records the jobs whose process the hard time limit killed (runs in the main process)."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):  # noqa: D102 - Celery hook
        if isinstance(exc, TimeLimitExceeded) and args:
            try:
                record_hard_timeout(str(args[0]), exc)
            except redis.exceptions.RedisError:
                logger.exception("could not record the time limit of job %s", args[0])
        super().on_failure(exc, task_id, args, kwargs, einfo)


def record_hard_timeout(job_id: str, exc: BaseException) -> None:
    store = get_store()
    settings = get_settings()
    message = f"hard time limit exceeded ({settings.task_time_limit}s); the attempt was killed"
    t = store.transition(
        job_id,
        JobState.FAILED,
        allowed=[JobState.RUNNING],
        message=message,
        fields={"error": {"type": "TimeLimitExceeded", "message": message, "retryable": False}},
        finish_attempt=_attempt_end("failed", "TimeLimitExceeded", message),
    )
    store.clear_lease(job_id)
    if t.ok:
        references.release(store, job_id, sender)


@app.task(
    bind=True,
    base=JobTask,
    name=RUN_JOB,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def run_job(self: Task, job_id: str, dispatch: int = 0) -> None:
    """Run one attempt of a job (see the module docstring)."""
    settings = get_settings()
    try:
        JobRun(job_id, int(dispatch), settings, get_store(settings), self.request.hostname).run()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
        # the outcome cannot be recorded: have the message delivered again
        logger.warning("job %s: status store unreachable (%s); requeued", job_id, type(e).__name__)
        raise Reject(requeue=True) from e


def _attempt_end(outcome: str, error_class: str | None = None, message: str | None = None):
    end: dict[str, Any] = {"end": time.time(), "outcome": outcome}
    if error_class:
        end["error_class"] = error_class
        end["error_message"] = message
    return end


def _holder_dead(holder: str) -> bool:
    """Whether a lease holder is a process of this host that no longer exists."""
    try:
        host, pid, _ = holder.rsplit(":", 2)
        pid_number = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid_number, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class _Heartbeat(threading.Thread):
    """Keeps a job's lease alive while its attempt runs."""

    def __init__(self, store: StatusStore, job_id: str, holder: str):
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self._store, self._job_id, self._holder = store, job_id, holder
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(LEASE_TTL / 3):
            try:
                if not self._store.refresh_lease(self._job_id, self._holder, LEASE_TTL):
                    logger.warning("job %s: lease lost while running", self._job_id)
            except redis.exceptions.RedisError:
                pass  # the next beat tries again

    def stop(self) -> None:
        self._stop_event.set()


class JobRun:
    """One delivery of a job's message."""

    def __init__(
        self, job_id: str, dispatch: int, settings: Settings, store: StatusStore, worker: str | None
    ):
        self.job_id = job_id
        self.dispatch = dispatch
        self.settings = settings
        self.store = store
        self.worker = worker or socket.gethostname()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.secrets = secrets_of(settings)
        self._leased = False

    def run(self) -> None:
        fields = self.store.get_fields(self.job_id, "state", "envelope")
        state = JobState(fields["state"]) if fields["state"] else None
        if state is None:
            logger.info("job %s: no record (purged?); message dropped", self.job_id)
            return
        if state.final:
            # a run that died after recording the outcome may not have released waiters
            references.release(self.store, self.job_id, sender)
            return
        if state is JobState.WAITING:
            return  # its references are not ready; it is sent again when they are
        if not self._take_lease():
            return
        try:
            self._attempt(state, fields["envelope"] or {})
        finally:
            self._release_lease()

    # --- lease -----------------------------------------------------------------------------

    def _take_lease(self) -> bool:
        if self.store.acquire_lease(self.job_id, self.holder, LEASE_TTL):
            self._leased = True
            return True
        current = self.store.lease_holder(self.job_id)
        if current is None and self.store.acquire_lease(self.job_id, self.holder, LEASE_TTL):
            self._leased = True
            return True
        if (
            current
            and _holder_dead(current)
            and self.store.steal_lease(self.job_id, current, self.holder, LEASE_TTL)
        ):
            logger.info("job %s: took over from a dead worker process", self.job_id)
            self._leased = True
            return True
        # someone else runs it: look again once its lease could have lapsed
        delay = max(1.0, self.store.lease_remaining(self.job_id) + 0.5)
        send_job(app, self.job_id, self.dispatch, countdown=delay)
        return False

    def _release_lease(self) -> None:
        if self._leased:
            self._leased = False
            self.store.release_lease(self.job_id, self.holder)

    # --- one attempt -----------------------------------------------------------------------

    def _attempt(self, state: JobState, envelope: dict[str, Any]) -> None:
        lost = None
        if state is JobState.RUNNING:
            lost = _attempt_end(
                "lost", "WorkerLost", "the worker running this attempt stopped before its end"
            )
        t = self.store.transition(
            self.job_id,
            JobState.RUNNING,
            allowed=[state],
            message=f"running on {self.worker}"
            + (" (delivered again after a lost attempt)" if lost else ""),
            fields={"started_at": repr(time.time())},
            start_attempt={
                "start": time.time(),
                "worker": self.worker,
                "pid": os.getpid(),
                "dispatch": self.dispatch,
                "outcome": "running",
            },
            finish_attempt=lost,
        )
        if not t.ok:
            logger.info("job %s: state changed to %s meanwhile; not run", self.job_id, t.previous)
            return
        counts = self.store.get_fields(self.job_id, "attempts", "run_attempts")
        heartbeat = _Heartbeat(self.store, self.job_id, self.holder)
        heartbeat.start()
        try:
            result = self._execute(envelope, counts["attempts"])
        except SoftTimeLimitExceeded as e:
            heartbeat.stop()
            limit = self.settings.task_soft_time_limit
            error = PermanentError(f"soft time limit exceeded ({limit}s)")
            error.__cause__ = e
            self._failed(error, counts["run_attempts"])
        except Exception as e:  # noqa: BLE001 - every error is recorded on the job
            heartbeat.stop()
            self._failed(e, counts["run_attempts"])
        else:
            heartbeat.stop()
            self._succeeded(result, envelope)

    def _execute(self, envelope: dict[str, Any], attempt: int) -> dict[str, Any]:
        op = OPERATIONS[envelope["operation"]]
        payload = self._resolve(envelope)
        client = get_client(self.settings, envelope.get("target"))
        ctx = effects.Context(
            job_id=self.job_id,
            operation=op,
            payload=payload,
            options=envelope.get("options") or {},
            attempt=attempt,
            client=client,
            store=self.store,
            settings=self.settings,
        )
        try:
            return effects.run(ctx)
        except AuthenticationError:
            if not can_login(self.settings, envelope.get("target")):
                raise
            # the token expired: log in again and repeat, as a repeat (exist_ok)
            client = relogin(self.settings, envelope.get("target"))
            return effects.run(dataclasses.replace(ctx, client=client, attempt=ctx.attempt + 1))

    def _resolve(self, envelope: dict[str, Any]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for ref_id in envelope.get("references") or []:
            ref = self.store.get_fields(ref_id, "state", "operation", "result")
            if ref["state"] != JobState.SUCCEEDED.value:
                raise PermanentError(
                    f"referenced job {ref_id} is {ref['state'] or 'gone'}, not succeeded"
                )
            result = dict(ref["result"] or {})
            if ref["operation"] == "add_data_samples":
                result["keys"] = self.store.sample_keys(ref_id)
            results[ref_id] = result
        try:
            return references.resolve(envelope["payload"], results)
        except references.BadReference as e:
            raise PermanentError(str(e)) from e

    # --- outcomes --------------------------------------------------------------------------

    def _succeeded(self, result: dict[str, Any], envelope: dict[str, Any]) -> None:
        follow = bool(envelope.get("follow"))
        fields: dict[str, Any] = {"result": result, "error": None}
        if follow:
            fields["progress"] = {"status": None, "done": 0, "total": None, "final": False}
        t = self.store.transition(
            self.job_id,
            JobState.SUCCEEDED,
            allowed=[JobState.RUNNING],
            message=f"key {result.get('key')}" if result.get("key") else "done",
            fields=fields,
            finish_attempt=_attempt_end("succeeded"),
        )
        self._release_lease()
        if not t.ok:
            logger.warning("job %s: could not record success (state %s)", self.job_id, t.previous)
            return
        logger.info("job %s succeeded (key %s)", self.job_id, result.get("key"))
        references.release(self.store, self.job_id, sender)
        if follow:
            send_follow(app, self.job_id, 1)

    def _failed(self, exc: BaseException, run_attempts: int) -> None:
        error = describe(exc, self.secrets)
        retry = error["retryable"] and run_attempts <= self.settings.task_max_retries
        end = _attempt_end("retrying" if retry else "failed", error["type"], error["message"])
        if retry:
            delay = backoff(self.settings, run_attempts)
            t = self.store.transition(
                self.job_id,
                JobState.RETRYING,
                allowed=[JobState.RUNNING],
                message=f"{error['type']}: {error['message']}; next attempt in {delay:.1f}s",
                fields={"error": error, "next_attempt_at": repr(time.time() + delay)},
                finish_attempt=end,
                dispatch=True,
            )
            self._release_lease()
            if t.ok:
                logger.info("job %s: %s; retry in %.1fs", self.job_id, error["type"], delay)
                send_job(app, self.job_id, t.dispatch, countdown=delay)
            return
        if error["retryable"]:
            error["message"] = f"gave up after {run_attempts} attempts: {error['message']}"
        t = self.store.transition(
            self.job_id,
            JobState.FAILED,
            allowed=[JobState.RUNNING],
            message=f"{error['type']}: {error['message']}",
            fields={"error": error},
            finish_attempt=end,
        )
        self._release_lease()
        logger.info("job %s failed: %s", self.job_id, error["type"])
        if t.ok:
            references.release(self.store, self.job_id, sender)
