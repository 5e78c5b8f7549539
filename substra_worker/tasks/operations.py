"""The task that runs one job: from its record to its outcome, whatever happens in between.

A message carries only the job id (and a dispatch number for tracing); the
payload is read from the status store. One attempt:

1. in one step (``StatusStore.start_attempt``): read the record (a finished,
   canceled or waiting job is left alone), take the job's lease (one worker at
   a time per job), record ``running`` and the attempt (a job found
   ``running`` was delivered again after its worker died: that attempt is
   recorded ``lost``). A lease whose holder died on this host is taken over;
   one held elsewhere is looked at again later;
2. resolve references, call the Client of this worker's node (``effects``),
   while the process's lease keeper renews the lease;
3. in one step, record ``succeeded`` with the result, or ``retrying`` (and
   send the next attempt with exponential backoff and jitter), or ``failed``,
   and release the lease;
4. release the jobs that wait on this one, if any.

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
from celery.signals import worker_process_init, worker_ready
from celery.utils.log import get_task_logger

from substra_worker import references
from substra_worker.envelope import OPERATIONS
from substra_worker.jobs import JobState
from substra_worker.sdk import archive
from substra_worker.sdk.exceptions import AuthenticationError
from substra_worker.settings import Settings, get_settings
from substra_worker.status_store import Start, StatusStore
from substra_worker.tasks import effects
from substra_worker.tasks.app import RUN_JOB, app, send_follow, send_job
from substra_worker.tasks.clients import can_login, get_client, relogin, secrets_of
from substra_worker.tasks.errors import PermanentError, describe
from substra_worker.tasks.recovery import start_sweeper

logger = get_task_logger(__name__)

LEASE_TTL = 30.0  # seconds: a job's lease lapses this long after its worker stops refreshing it
HOSTNAME = socket.gethostname()  # in lease holders: a holder of this host can be checked alive

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


@worker_ready.connect
@worker_process_init.connect
def _remove_orphan_zips(**kwargs: Any) -> None:
    """A starting worker, and a pool process replacing a killed one, remove the upload
    zips that dead processes left behind."""
    try:
        removed = archive.remove_orphans()
    except OSError as e:
        logger.warning("could not remove the upload zips of dead processes: %s", e)
        return
    if removed:
        logger.info("removed %d upload zip(s) left by dead processes", removed)


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
    if t.ok and t.waiters:
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
    if host != HOSTNAME:
        return False
    try:
        os.kill(pid_number, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseKeeper:
    """Renews the leases of the jobs this process runs: one thread per process, not per job.

    Every ``interval`` seconds, the leases of every registered job are extended
    to ``ttl`` in one round trip per status store. A lease found lost (it
    lapsed, or a worker took it over) is logged; the attempt carries on, and
    its outcome is recorded only if the job is still ``running``.
    """

    def __init__(self, interval: float = LEASE_TTL / 3, ttl: float = LEASE_TTL):
        self.interval = interval
        self.ttl = ttl
        self._jobs: dict[str, tuple[StatusStore, str]] = {}  # job id -> (store, holder)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def add(self, store: StatusStore, job_id: str, holder: str) -> None:
        """Keep ``holder``'s lease on ``job_id`` alive until ``discard``."""
        with self._lock:
            self._jobs[job_id] = (store, holder)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="substra-worker-leases", daemon=True
                )
                self._thread.start()

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def held(self) -> dict[str, str]:
        """The leases kept: job id -> holder."""
        with self._lock:
            return {job_id: holder for job_id, (_, holder) in self._jobs.items()}

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def renew(self) -> None:
        """Extend every kept lease now."""
        with self._lock:
            by_store: dict[int, tuple[StatusStore, dict[str, str]]] = {}
            for job_id, (store, holder) in self._jobs.items():
                by_store.setdefault(id(store), (store, {}))[1][job_id] = holder
        for store, leases in by_store.values():
            try:
                lost = store.refresh_leases(leases, self.ttl)
            except redis.exceptions.RedisError:
                continue  # the next beat tries again
            for job_id in lost:
                with self._lock:
                    still_kept = self._jobs.get(job_id, (None, None))[1] == leases[job_id]
                if still_kept:
                    logger.warning("job %s: lease lost while running", job_id)

    def _run(self) -> None:
        while not self._wake.wait(self.interval) and not self._stopped:
            self.renew()


_keepers: dict[int, LeaseKeeper] = {}
_keepers_lock = threading.Lock()


def lease_keeper() -> LeaseKeeper:
    """This process's lease keeper (a forked pool process starts its own thread)."""
    pid = os.getpid()
    keeper = _keepers.get(pid)
    if keeper is None:
        with _keepers_lock:
            keeper = _keepers.get(pid)
            if keeper is None:
                keeper = _keepers[pid] = LeaseKeeper()
    return keeper


class JobRun:
    """One delivery of a job's message."""

    def __init__(
        self, job_id: str, dispatch: int, settings: Settings, store: StatusStore, worker: str | None
    ):
        self.job_id = job_id
        self.dispatch = dispatch
        self.settings = settings
        self.store = store
        self.worker = worker or HOSTNAME
        self.holder = f"{HOSTNAME}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.secrets = secrets_of(settings)
        self._leased = False

    def run(self) -> None:
        start = self._start()
        if start.outcome == "missing":
            logger.info("job %s: no record (purged?); message dropped", self.job_id)
            return
        if start.outcome == "final":
            if start.waiters:
                # a run that died after recording the outcome did not release its waiters
                references.release(self.store, self.job_id, sender)
            return
        if start.outcome == "waiting":
            return  # its references are not ready; it is sent again when they are
        if start.outcome == "busy":
            # someone else runs it: look again once its lease could have lapsed
            delay = max(1.0, start.lease_remaining + 0.5)
            send_job(app, self.job_id, self.dispatch, countdown=delay)
            return
        self._leased = True
        try:
            self._attempt(start)
        finally:
            self._release_lease()

    # --- lease -----------------------------------------------------------------------------

    def _start(self, take_over: str | None = None) -> Start:
        """Take the lease and record ``running``; take over from a holder known dead."""
        start = self.store.start_attempt(
            self.job_id,
            self.holder,
            LEASE_TTL,
            attempt={
                "start": time.time(),
                "worker": self.worker,
                "pid": os.getpid(),
                "dispatch": self.dispatch,
                "outcome": "running",
            },
            message=f"running on {self.worker}",
            lost=_attempt_end(
                "lost", "WorkerLost", "the worker running this attempt stopped before its end"
            ),
            lost_message=f"running on {self.worker} (delivered again after a lost attempt)",
            take_over=take_over,
        )
        if (
            start.outcome == "busy"
            and take_over is None
            and start.holder
            and _holder_dead(start.holder)
        ):
            start = self._start(take_over=start.holder)
            if start.outcome == "running":
                logger.info("job %s: took over from a dead worker process", self.job_id)
        return start

    def _release_lease(self) -> None:
        """Release the lease if no outcome step did (the attempt ended without one)."""
        lease_keeper().discard(self.job_id)
        if self._leased:
            self._leased = False
            self.store.release_lease(self.job_id, self.holder)

    # --- one attempt -----------------------------------------------------------------------

    def _attempt(self, start: Start) -> None:
        envelope = start.envelope or {}
        keeper = lease_keeper()
        keeper.add(self.store, self.job_id, self.holder)
        try:
            result = self._execute(envelope, start.attempts)
        except SoftTimeLimitExceeded as e:
            keeper.discard(self.job_id)
            limit = self.settings.task_soft_time_limit
            error = PermanentError(f"soft time limit exceeded ({limit}s)")
            error.__cause__ = e
            self._failed(error, start.run_attempts)
        except Exception as e:  # noqa: BLE001 - every error is recorded on the job
            keeper.discard(self.job_id)
            self._failed(e, start.run_attempts)
        else:
            keeper.discard(self.job_id)
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
            release_lease=self.holder,
        )
        self._leased = False
        if not t.ok:
            logger.warning("job %s: could not record success (state %s)", self.job_id, t.previous)
            return
        logger.info("job %s succeeded (key %s)", self.job_id, result.get("key"))
        if t.waiters:
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
                release_lease=self.holder,
            )
            self._leased = False
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
            release_lease=self.holder,
        )
        self._leased = False
        logger.info("job %s failed: %s", self.job_id, error["type"])
        if t.ok and t.waiters:
            references.release(self.store, self.job_id, sender)
