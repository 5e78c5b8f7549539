"""Finding jobs whose message was lost, and sending it again.

A job record and its message are two Redis writes. Should Redis lose the
last second of writes (killed without a clean shutdown), or a send fail after
the record was written, a job could sit ``queued`` with no message and never
run. Workers therefore sweep, at start-up and then every few minutes: an
active job (queued, retrying, or running without a live lease) that has no
message in the queue or in the broker's unacknowledged set, and has not moved
for a while, is sent again; a waiting job whose references are all finished is
re-checked. Sending a job twice is harmless (one lease per job, ``exist_ok`` on
repeats, finished jobs drop their messages), so the sweep errs on the side of
sending.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import redis
from celery.utils.log import get_task_logger

from substra_worker import references
from substra_worker.jobs import JobState
from substra_worker.status_store import StatusStore
from substra_worker.tasks.app import QUEUE, RUN_JOB

logger = get_task_logger(__name__)

STALE_AFTER = 60.0  # seconds an active job must be unchanged before its message is checked
INTERVAL = 300.0  # seconds between sweeps of one worker
UNACKED_KEY = "unacked"  # kombu's Redis transport keeps delivered, unacknowledged messages here
_CHUNK = 1000


def _job_id(raw: str) -> str | None:
    """The job id a run_job message carries, if ``raw`` is one."""
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # unacked entries are [message, exchange, routing key]
            message = message[0]
        if message.get("headers", {}).get("task") != RUN_JOB:
            return None
        args = json.loads(base64.b64decode(message["body"]))[0]
        return str(args[0])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def live_job_ids(client: redis.Redis, queue: str = QUEUE) -> set[str]:
    """Ids of the jobs that have a message waiting or delivered."""
    ids: set[str] = set()
    length = client.llen(queue)
    for start in range(0, length, _CHUNK):
        for raw in client.lrange(queue, start, start + _CHUNK - 1):
            job_id = _job_id(raw)
            if job_id:
                ids.add(job_id)
    for _, raw in client.hscan_iter(UNACKED_KEY, count=_CHUNK):
        job_id = _job_id(raw)
        if job_id:
            ids.add(job_id)
    return ids


def recover(store: StatusStore, send: Any, older_than: float = STALE_AFTER) -> list[str]:
    """Send again the messages of stale active jobs that have none; return their ids."""
    lock = f"{store.prefix}recovery"
    if not store.redis.set(lock, "1", nx=True, ex=max(30, int(older_than))):
        return []  # another worker is sweeping
    recovered: list[str] = []
    try:
        ceiling = time.time() - older_than
        candidates: list[tuple[str, JobState]] = []
        for state in (JobState.QUEUED, JobState.RETRYING, JobState.RUNNING):
            index = f"{store.prefix}state:{state.value}"
            candidates += [(i, state) for i in store.redis.zrangebyscore(index, "-inf", ceiling)]
        if candidates:
            live = live_job_ids(store.redis)
            for job_id, state in candidates:
                if job_id in live or store.lease_holder(job_id):
                    continue
                t = store.transition(
                    job_id,
                    state,
                    allowed=[state],
                    message="no message found for this job: sent again",
                    dispatch=True,
                )
                if t.ok:
                    send(job_id, t.dispatch)
                    recovered.append(job_id)
        waiting = f"{store.prefix}state:{JobState.WAITING.value}"
        for job_id in store.redis.zrangebyscore(waiting, "-inf", ceiling):
            references.release(store, job_id, send)
    finally:
        store.redis.delete(lock)
    if recovered:
        logger.warning("sent again %d job(s) whose message was lost", len(recovered))
    return recovered


def start_sweeper(store_factory: Any, send: Any, interval: float = INTERVAL) -> threading.Thread:
    """Sweep now, then every ``interval`` seconds, in a daemon thread."""

    def loop() -> None:
        while True:
            try:
                recover(store_factory(), send)
            except redis.exceptions.RedisError as e:
                logger.warning("recovery sweep skipped: %s", type(e).__name__)
            except Exception:  # noqa: BLE001 - the sweeper must outlive any bug of one sweep
                logger.exception("recovery sweep failed")
            time.sleep(interval)

    thread = threading.Thread(target=loop, name="substra-worker-recovery", daemon=True)
    thread.start()
    return thread


def restore_all_unacked(redis_url: str) -> int:
    """Put every delivered-but-unacknowledged message back in its queue; return how many.

    Only safe when no worker is running (``up`` with its own Redis, before it
    starts its worker): the broker would otherwise redeliver these messages
    only after the visibility timeout, hours later.
    """
    from kombu import Connection

    client = redis.Redis.from_url(redis_url)
    try:
        count = client.hlen(UNACKED_KEY)
    finally:
        client.close()
    if not count:
        return 0
    with Connection(redis_url, transport_options={"visibility_timeout": 0}) as conn:
        conn.default_channel.qos.restore_visible(start=0, num=count + 1, interval=1)
    return count
