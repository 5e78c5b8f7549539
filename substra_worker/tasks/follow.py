"""Following a tuple or compute plan on the node after its job created it.

With ``follow=True`` a job's ``progress`` tracks the node's status
(``status``, ``done``/``total`` from ``doneCount``/``tupleCount``) until it is
final (``done``, ``failed``, ``canceled``). Each poll is a short task that
schedules the next one with a countdown, so no worker slot is held while the
node computes. A poll message that arrives ahead of the recorded schedule, or while
another poll of the job runs, is a duplicate and dies out instead of starting
a second polling loop; one that arrives late (redelivered after a crash)
carries the loop on.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject
from celery.utils.log import get_task_logger

from substra_worker.jobs import JobState
from substra_worker.sdk.exceptions import AuthenticationError
from substra_worker.settings import get_settings
from substra_worker.tasks.app import FOLLOW_JOB, app, send_follow
from substra_worker.tasks.clients import can_login, get_client, relogin, secrets_of
from substra_worker.tasks.errors import describe, is_retryable
from substra_worker.tasks.operations import backoff, get_store

logger = get_task_logger(__name__)

FINAL_STATUSES = frozenset({"done", "failed", "canceled"})
POLL_LOCK_TTL = 30.0  # seconds: longest a poll may hold the job's follow lock
EARLY = 0.5  # seconds: a poll message may run this much ahead of its schedule


def poll(client: Any, operation: str, key: str) -> dict[str, Any]:
    """The progress of the tuple or plan ``key`` that ``operation`` created."""
    if operation in ("add_compute_plan", "update_compute_plan"):
        plan = client.get_compute_plan(key)
        status = plan.get("status")
        return {
            "status": status,
            "done": int(plan.get("doneCount") or 0),
            "total": int(plan.get("tupleCount") or 0),
            "final": status in FINAL_STATUSES,
        }
    kind = operation.removeprefix("add_")
    tuple_ = getattr(client, f"get_{kind}")(key)
    status = tuple_.get("status")
    return {
        "status": status,
        "done": 1 if status == "done" else 0,
        "total": 1,
        "final": status in FINAL_STATUSES,
    }


@app.task(
    bind=True,
    name=FOLLOW_JOB,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def follow_job(self: Task, job_id: str, seq: int = 0) -> None:
    """Poll the node once for a followed job and schedule the next poll."""
    settings = get_settings()
    store = get_store(settings)
    token = uuid.uuid4().hex
    lock = f"{job_id}:follow"
    try:
        if not store.acquire_lease(lock, token, POLL_LOCK_TTL):
            return  # a poll of this job is running right now: this message is a duplicate
        try:
            _poll_once(store, settings, job_id, seq)
        finally:
            store.release_lease(lock, token)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
        logger.warning("job %s: status store unreachable while following; requeued", job_id)
        raise Reject(requeue=True) from e


def _poll_once(store: Any, settings: Any, job_id: str, seq: int) -> None:
    fields = store.get_fields(job_id, "state", "envelope", "result", "progress")
    if fields["state"] != JobState.SUCCEEDED.value:
        return
    previous = fields["progress"] or {}
    if previous.get("final"):
        return
    if time.time() < float(previous.get("next_poll_at") or 0) - EARLY:
        return  # a duplicate arriving ahead of the scheduled poll
    envelope = fields["envelope"] or {}
    operation = envelope.get("operation", "")
    key = (fields["result"] or {}).get("key")
    delay = settings.follow_interval
    try:
        client = get_client(settings, envelope.get("target"))
        try:
            progress = poll(client, operation, key)
        except AuthenticationError:
            if not can_login(settings, envelope.get("target")):
                raise
            progress = poll(relogin(settings, envelope.get("target")), operation, key)
    except Exception as e:  # noqa: BLE001 - a poll error is recorded, never raised
        errors = int(previous.get("errors") or 0) + 1
        progress = {k: v for k, v in previous.items() if k != "error"}
        progress["error"] = describe(e, secrets_of(settings))
        progress["errors"] = errors
        if not is_retryable(e) or errors > settings.task_max_retries:
            progress["final"] = True
        delay = backoff(settings, errors)
    now = time.time()
    progress["updated_at"] = now
    progress["polls"] = int(previous.get("polls") or 0) + 1
    progress["next_poll_at"] = None if progress.get("final") else now + delay
    if not store.set_fields(job_id, progress=progress):
        return  # the record is gone
    if not progress.get("final"):
        send_follow(app, job_id, seq + 1, countdown=delay)
