"""The no-op baseline of the queue-overhead benchmark: a task on substra-worker's own Celery app.

Loaded into the benchmark's worker (``--include=bench.noop``), so it runs with
exactly the settings of the jobs it is compared with: same app, same broker,
same queue, late acks, prefetch 1, same pool and concurrency. Its only work is
to count itself in Redis, which is how the benchmark knows it ran.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

from substra_worker.tasks.app import QUEUE, app

NOOP = "bench.noop"
_clients: dict[int, redis.Redis] = {}


def counter_key(run: str) -> str:
    return f"bench:noop:{run}"


def _redis() -> redis.Redis:
    pid = os.getpid()  # connections do not survive the pool's fork
    client = _clients.get(pid)
    if client is None:
        client = _clients[pid] = redis.Redis.from_url(app.conf.broker_url)
    return client


@app.task(name=NOOP, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def noop(run: str) -> None:
    """Do nothing but say so."""
    _redis().incr(counter_key(run))


def send_noop(producer_app: Celery, run: str) -> None:
    """Queue one no-op message the way ``send_job`` queues a job's message.

    ``producer_app`` is the producer's app (``Submitter.app``): the same one jobs
    are sent with.
    """
    producer_app.send_task(NOOP, args=[run], queue=QUEUE, ignore_result=True)
