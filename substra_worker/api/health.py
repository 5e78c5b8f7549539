"""Health as the queue's users live it: a message sent through the broker comes back.

A worker process that exists but does not consume (stuck, disconnected,
listening to another queue) must not count as healthy, so ``/healthz`` sends a
canary message on the job queue and waits for a worker to run it. The canary
is Celery's built-in ``celery.accumulate`` task (it echoes its arguments), which
every worker registers whatever task modules it loads; the message asks for its
result to be stored, and that stored result is the proof of the round trip.

At most one canary is in flight at a time (``sw:api:canary``, shared by every
API process), so a health probe polled while no worker runs does not pile up
messages; each canary also expires, and a worker that meets an expired one
discards it.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from substra_worker.tasks.app import QUEUE

CANARY_TASK = "celery.accumulate"
CANARY_EXPIRES = 60  # seconds: a canary not consumed by then is dropped and replaced
POLL_INTERVAL = 0.05  # seconds between two reads of the canary's result


@dataclass
class Health:
    ok: bool
    body: dict[str, Any] = field(default_factory=dict)


def fast_client(url: str) -> redis.Redis:
    """A Redis client that fails fast: a probe must answer, not ride out an outage."""
    return redis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=2, socket_timeout=2
    )


def queue_depth(client: redis.Redis, queue: str = QUEUE) -> int:
    """Messages waiting in Celery's Redis lists for ``queue`` (every priority level)."""
    sep = "\x06\x16"
    pipe = client.pipeline(transaction=False)
    for priority in (0, 3, 6, 9):
        pipe.llen(queue if priority == 0 else f"{queue}{sep}{priority}")
    return sum(int(n) for n in pipe.execute())


class Canary:
    """Sends canaries through ``app``'s broker and waits for a worker to consume them."""

    def __init__(self, app: Any, client: redis.Redis, prefix: str = "sw:", queue: str = QUEUE):
        self.app = app
        self.redis = client
        self.queue = queue
        self.key = f"{prefix}api:canary"

    def check(self, timeout: float) -> Health:
        """Healthy when a worker consumes a canary within ``timeout`` seconds."""
        started = time.monotonic()
        try:
            self.redis.ping()
        except redis.exceptions.RedisError as e:
            return Health(False, {"status": "unavailable", "message": f"Redis unreachable: {e}"})
        try:
            pending = self._pending()
            if pending is not None and self._consumed(pending["id"]) is not None:
                self._clear(pending)  # old evidence: send a fresh canary
                pending = None
            if pending is None:
                try:
                    pending = self._send()
                except redis.exceptions.RedisError:
                    raise
                except Exception as e:  # noqa: BLE001 - any broker error means unhealthy
                    return Health(
                        False,
                        {"status": "unavailable", "message": f"could not send the canary: {e}"},
                    )
            while True:
                done_at = self._consumed(pending["id"])
                if done_at is not None:
                    self._clear(pending)
                    return Health(
                        True,
                        {
                            "status": "ok",
                            "round_trip": round(max(0.0, done_at - pending["sent_at"]), 3),
                            "checked_in": round(time.monotonic() - started, 3),
                            "queue_depth": queue_depth(self.redis, self.queue),
                        },
                    )
                if time.monotonic() - started >= timeout:
                    break
                time.sleep(POLL_INTERVAL)
            age = time.time() - pending["sent_at"]
            depth = queue_depth(self.redis, self.queue)
            return Health(
                False,
                {
                    "status": "unavailable",
                    "message": (
                        f"no worker consumed the canary sent {age:.1f}s ago "
                        f"({depth} message(s) waiting on queue {self.queue!r})"
                    ),
                    "queue_depth": depth,
                },
            )
        except redis.exceptions.RedisError as e:
            return Health(False, {"status": "unavailable", "message": f"Redis unreachable: {e}"})

    # --- internals -------------------------------------------------------------------

    def _pending(self) -> dict[str, Any] | None:
        raw = self.redis.get(self.key)
        if not raw:
            return None
        try:
            pending = json.loads(raw)
            return {"id": str(pending["id"]), "sent_at": float(pending["sent_at"])}
        except (ValueError, KeyError, TypeError):
            self.redis.delete(self.key)
            return None

    def _send(self) -> dict[str, Any]:
        pending = {"id": f"canary-{uuid.uuid4().hex}", "sent_at": time.time()}
        if not self.redis.set(self.key, json.dumps(pending), nx=True, ex=CANARY_EXPIRES):
            # another probe sent one meanwhile: wait for that one
            other = self._pending()
            if other is not None:
                return other
            self.redis.set(self.key, json.dumps(pending), ex=CANARY_EXPIRES)
        try:
            self.app.send_task(
                CANARY_TASK,
                args=[pending["id"]],
                task_id=pending["id"],
                queue=self.queue,
                expires=CANARY_EXPIRES,
                ignore_result=False,
                retry=False,
            )
        except Exception:
            self._clear(pending)  # not sent: the next probe sends its own
            raise
        return pending

    def _result_key(self, task_id: str) -> str:
        key = self.app.backend.get_key_for_task(task_id)
        return key.decode() if isinstance(key, bytes) else key

    def _consumed(self, task_id: str) -> float | None:
        """When a worker ran the canary (epoch seconds), or None while it has not."""
        raw = self.redis.get(self._result_key(task_id))
        if not raw:
            return None
        try:
            meta = json.loads(raw)
        except ValueError:
            return None
        if meta.get("status") != "SUCCESS":
            return None
        try:
            done = datetime.fromisoformat(meta["date_done"])
        except (KeyError, TypeError, ValueError):
            return time.time()
        if done.tzinfo is None:
            done = done.replace(tzinfo=UTC)  # Celery writes UTC
        return done.timestamp()

    def _clear(self, pending: dict[str, Any]) -> None:
        self.redis.delete(self._result_key(pending["id"]))
        current = self._pending()
        if current is not None and current["id"] == pending["id"]:
            self.redis.delete(self.key)
