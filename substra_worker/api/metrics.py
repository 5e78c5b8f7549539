"""``GET /metrics``: the queue in the Prometheus text format, read from Redis at scrape time.

A ``prometheus_client`` collector reads everything when Prometheus scrapes, so
the numbers are the same whichever API process answers and nothing is kept in
process memory:

- ``substra_worker_jobs{state}``, ``substra_worker_jobs_by_operation{operation,state}`` and
  ``substra_worker_oldest_queued_seconds`` from the status store's indexes;
- ``substra_worker_queue_depth`` (Celery's Redis list) and ``substra_worker_queue_unacked``
  (messages a worker holds: running, or waiting for a retry countdown);
- ``substra_worker_job_queue_wait_seconds`` and ``substra_worker_job_run_seconds``
  histograms, ``substra_worker_job_attempts_total`` and ``substra_worker_job_retries_total``
  (see ``latency``);
- ``substra_worker_watch_folders{root,status}``, ``substra_worker_watch_backlog{root}`` and
  ``substra_worker_watch_lag_seconds{root}`` from the watcher's folder records.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from substra_worker.api.health import queue_depth
from substra_worker.api.latency import LatencyLedger, cumulative
from substra_worker.status_store import ALL_STATES, StatusStore
from substra_worker.tasks.app import QUEUE
from substra_worker.watcher.state import FolderStatus, WatchState, known_roots

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNACKED_KEY = "unacked"  # kombu's Redis transport: hash of delivered, unacknowledged messages
# folders the watcher has seen but that are not on the node yet
BACKLOG = (FolderStatus.WAITING, FolderStatus.STALLED, FolderStatus.SUBMITTING, FolderStatus.QUEUED)
HISTOGRAM_HELP = {
    "queue_wait": "Seconds from a job entering the queue to its first attempt starting.",
    "run": "Seconds from a job's first attempt starting to its final state (retries included).",
}


class QueueCollector:
    """Reads the status store, the broker and the watcher state when collected."""

    def __init__(self, store: StatusStore, ledger: LatencyLedger, queue: str = QUEUE):
        self.store = store
        self.ledger = ledger
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        yield from self._jobs()
        yield from self._broker()
        yield from self._latency()
        yield from self._watcher()

    def _jobs(self) -> Iterator[Metric]:
        stats = self.store.stats(by_operation=True)
        by_state = GaugeMetricFamily(
            "substra_worker_jobs", "Jobs in the status store, per state.", labels=["state"]
        )
        for state in ALL_STATES:
            by_state.add_metric([state], stats["states"].get(state, 0))
        yield by_state
        by_op = GaugeMetricFamily(
            "substra_worker_jobs_by_operation",
            "Jobs in the status store, per operation and state (non-zero only).",
            labels=["operation", "state"],
        )
        for operation, counts in sorted(stats["operations"].items()):
            for state, n in sorted(counts.items()):
                by_op.add_metric([operation, state], n)
        yield by_op
        oldest = self.store.redis.zrange(f"{self.store.prefix}state:queued", 0, 0, withscores=True)
        age = GaugeMetricFamily(
            "substra_worker_oldest_queued_seconds",
            "How long the oldest queued job has waited for a worker (0 when none waits).",
        )
        age.add_metric([], max(0.0, time.time() - oldest[0][1]) if oldest else 0.0)
        yield age

    def _broker(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "substra_worker_queue_depth",
            "Messages waiting in the broker for a worker.",
            labels=["queue"],
        )
        depth.add_metric([self.queue], queue_depth(self.store.redis, self.queue))
        yield depth
        unacked = GaugeMetricFamily(
            "substra_worker_queue_unacked",
            "Messages delivered to workers and not acknowledged yet (running or retry countdown).",
        )
        unacked.add_metric([], self.store.redis.hlen(UNACKED_KEY))
        yield unacked

    def _latency(self) -> Iterator[Metric]:
        self.ledger.fold()
        snap = self.ledger.snapshot()
        for kind in ("queue_wait", "run"):
            family = HistogramMetricFamily(
                f"substra_worker_job_{kind}_seconds", HISTOGRAM_HELP[kind], labels=["operation"]
            )
            for (k, operation), h in sorted(snap["histograms"].items()):
                if k == kind:
                    family.add_metric([operation], cumulative(h["buckets"]), h["sum"])
            yield family
        attempts = CounterMetricFamily(
            "substra_worker_job_attempts",
            "Attempts of finished job runs, per operation and outcome "
            "(succeeded, failed, retrying, lost).",
            labels=["operation", "outcome"],
        )
        for (operation, outcome), n in sorted(snap["attempts"].items()):
            attempts.add_metric([operation, outcome], n)
        yield attempts
        retries = CounterMetricFamily(
            "substra_worker_job_retries",
            "Automatic retries (attempts that ended with a retryable error) of finished job runs.",
            labels=["operation"],
        )
        for operation, n in sorted(snap["retries"].items()):
            retries.add_metric([operation], n)
        yield retries

    def _watcher(self) -> Iterator[Metric]:
        folders = GaugeMetricFamily(
            "substra_worker_watch_folders",
            "Folders of a watch root, per watcher status.",
            labels=["root", "status"],
        )
        backlog = GaugeMetricFamily(
            "substra_worker_watch_backlog",
            "Folders seen by the watcher and not registered yet (waiting, stalled, "
            "submitting, queued).",
            labels=["root"],
        )
        lag = GaugeMetricFamily(
            "substra_worker_watch_lag_seconds",
            "Age of the oldest folder of the backlog (0 when the backlog is empty).",
            labels=["root"],
        )
        now = time.time()
        for _, path in sorted(known_roots(self.store.redis, self.store.prefix).items()):
            state = WatchState(self.store.redis, path, prefix=self.store.prefix)
            counts: dict[str, int] = {}
            oldest: float | None = None
            pending = 0
            for record in state.folders():
                counts[record.status] = counts.get(record.status, 0) + 1
                if record.status in BACKLOG:
                    pending += 1
                    seen = record.first_seen or record.updated_at or now
                    oldest = seen if oldest is None else min(oldest, seen)
            for status in FolderStatus:
                folders.add_metric([path, status.value], counts.get(status.value, 0))
            backlog.add_metric([path], pending)
            lag.add_metric([path], max(0.0, now - oldest) if oldest is not None else 0.0)
        yield folders
        yield backlog
        yield lag


class MetricsExporter:
    """Renders the collector in the Prometheus text format."""

    def __init__(self, store: StatusStore, ledger: LatencyLedger | None = None):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(QueueCollector(store, ledger or LatencyLedger(store)))

    def render(self) -> bytes:
        return generate_latest(self.registry)
