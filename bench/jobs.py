"""Reading job outcomes straight from the status store, cheaply enough to poll every few ms.

The benchmarks wait on these instead of ``Job.refresh()`` on every job, so that
waiting adds almost nothing to what is measured (a few Redis commands per poll).
"""

from __future__ import annotations

from substra_worker.status_store import PREFIX, StatusStore


def finished(store: StatusStore, operation: str) -> tuple[int, int]:
    """How many ``operation`` jobs (succeeded, failed) the store holds."""
    pipe = store.redis.pipeline(transaction=False)
    pipe.zcard(f"{PREFIX}opstate:{operation}:succeeded")
    pipe.zcard(f"{PREFIX}opstate:{operation}:failed")
    succeeded, failed = pipe.execute()
    return int(succeeded), int(failed)


def registered_samples(store: StatusStore) -> tuple[int, int]:
    """Samples recorded by succeeded ``add_data_samples`` jobs, and the number of failed jobs."""
    ids = store.redis.zrange(f"{PREFIX}opstate:add_data_samples:succeeded", 0, -1)
    pipe = store.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.llen(f"{store.job_key(job_id)}:keys")
    pipe.zcard(f"{PREFIX}opstate:add_data_samples:failed")
    *counts, failed = pipe.execute()
    return sum(int(c) for c in counts), int(failed)


def first_error(store: StatusStore, operation: str) -> str:
    """The recorded error of one failed ``operation`` job, for the benchmark's error message."""
    ids = store.redis.zrange(f"{PREFIX}opstate:{operation}:failed", 0, 0)
    if not ids:
        return "no failed job"
    record = store.load(ids[0]) or {}
    return str(record.get("error"))
