"""A job whose message could not be sent: what strands it, and what rescues it.

Found by the Redis-restart scenario: a worker that records a job's success and
then releases its waiters marks each waiter ``queued`` *before* sending its
message. When that send fails (the broker went away mid-publish; seen once in
the worker's pool process as kombu's ``AttributeError: 'NoneType' object has no
attribute 'client'`` while Redis restarted), the waiter is left queued with no
message. Only the recovery sweep sends it again, once it is 60 s stale and at
the next sweep (every 300 s).
"""

from __future__ import annotations

import pytest
from kombu.exceptions import OperationalError

from substra_worker import references
from substra_worker.jobs import JobState
from substra_worker.tasks.recovery import recover
from tests.faults.results import record_reliability_check
from tests.faults.workload import dataset_data

pytestmark = pytest.mark.timeout(60)


def failing_send(job_id: str, dispatch: int) -> None:
    raise OperationalError("the broker went away mid-publish")


@pytest.fixture
def waiting_pair(submitter, tmp_path):
    """A job that just succeeded (its message consumed) and a job waiting on it."""
    first = submitter.add_dataset(dataset_data(tmp_path, "first"))
    waiter = submitter.add_algo(
        {
            "name": "waiter",
            "file": dataset_data(tmp_path, "x")["data_opener"],
            "description": dataset_data(tmp_path, "y")["description"],
            "permissions": {"public": True, "authorized_ids": []},
        },
        references=[first.id],
    )
    assert waiter.state is JobState.WAITING
    store = submitter.store
    store.redis.delete("substra-worker")  # as if a worker had consumed the first message
    store.transition(first.id, JobState.RUNNING, allowed=[JobState.QUEUED])
    store.transition(
        first.id,
        JobState.SUCCEEDED,
        allowed=[JobState.RUNNING],
        fields={"result": {"key": "d" * 64}},
    )
    return store, first, waiter


def test_a_failed_send_while_releasing_does_not_strand_the_waiter(waiting_pair):
    check = "A waiting job whose release could not send its message is sent at the next chance"
    record_reliability_check(check, "gap", "stranded queued until the recovery sweep (minutes)")
    store, first, waiter = waiting_pair
    # When the release after the first job's success cannot send the waiter's message
    with pytest.raises(OperationalError):
        references.release(store, first.id, failing_send)
    # Then releasing again (the next chance a worker has) sends it
    sent: list[str] = []
    references.release(store, first.id, lambda job_id, n: sent.append(job_id))
    assert sent == [waiter.id], f"the waiter is {store.state(waiter.id)} and was not sent"
    record_reliability_check(check, "pass")


def test_the_recovery_sweep_sends_a_job_whose_release_failed(waiting_pair):
    store, first, waiter = waiting_pair
    with pytest.raises(OperationalError):
        references.release(store, first.id, failing_send)
    assert store.state(waiter.id) is JobState.WAITING  # put back, with no message anywhere
    assert store.redis.llen("substra-worker") == 0
    # the sweep every worker runs (here without waiting for the job to be 60 s stale)
    sent: list[str] = []
    recover(store, lambda job_id, n: sent.append(job_id), older_than=0)
    assert sent == [waiter.id]
    assert store.state(waiter.id) is JobState.QUEUED
    record_reliability_check(
        "The recovery sweep sends a waiting job whose release could not send it", "pass"
    )
