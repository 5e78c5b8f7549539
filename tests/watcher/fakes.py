"""An in-memory stand-in for the Submitter, for the unit tests of the watcher's logic ONLY.

It keeps the Submitter's surface the watcher's gateway uses (``submit`` with
idempotency keys and references, ``get_job`` returning an object with ``id``,
``state``, ``keys``, ``error``), and lets a test decide when and how each job
ends. The end-to-end tests use the real Submitter, Redis, worker and node.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from substra_worker.jobs import JobNotFound, JobState
from substra_worker.references import find_refs, parse_ref
from substra_worker.watcher import readiness as rd


@dataclass
class FakeJob:
    id: str
    operation: str
    data: dict
    options: dict
    state: JobState = JobState.QUEUED
    keys: list[str] = field(default_factory=list)
    error: dict | None = None


class FakeSubmitter:
    """Jobs in a dict; ``run()`` plays a node that holds samples by content key."""

    def __init__(self, root: Path):
        self.root = root
        self.jobs: dict[str, FakeJob] = {}
        self.idem: dict[str, str] = {}
        self.samples: dict[str, set[str]] = {}  # sample key -> dataset keys
        self.datasets: set[str] = set()
        self._ids = (f"{i:032x}" for i in itertools.count(1))
        self.failures: dict[str, list[str]] = {}  # operation -> messages of its next runs

    # --- the Submitter surface the gateway uses ----------------------------------------

    def submit(self, operation: str, data: dict, **options) -> FakeJob:
        key = options.get("idempotency_key")
        if key and key in self.idem:
            return self.jobs[self.idem[key]]
        job = FakeJob(next(self._ids), operation, data, options)
        self.jobs[job.id] = job
        if key:
            self.idem[key] = job.id
        return job

    def get_job(self, job_id: str) -> FakeJob:
        if job_id not in self.jobs:
            raise JobNotFound(job_id)
        return self.jobs[job_id]

    # --- test controls ----------------------------------------------------------------

    def fail(self, operation: str, message: str, times: int = 1) -> None:
        """The next ``times`` runs of ``operation`` fail with ``message``."""
        self.failures.setdefault(operation, []).extend([message] * times)

    def of(self, operation: str) -> list[FakeJob]:
        return [j for j in self.jobs.values() if j.operation == operation]

    def run(self) -> None:
        """Run every runnable job, in submission order, until none is left."""
        progress = True
        while progress:
            progress = False
            for job in list(self.jobs.values()):
                if job.state is not JobState.QUEUED:
                    continue
                refs = [r.job_id for r in find_refs(job.data)] + list(
                    job.options.get("references") or []
                )
                states = [self.jobs[r].state for r in refs]
                if any(s in (JobState.FAILED, JobState.CANCELED) for s in states):
                    self._fail(job, "ReferenceFailed", "a referenced job failed")
                    progress = True
                    continue
                if any(s is not JobState.SUCCEEDED for s in states):
                    continue
                self._execute(job)
                progress = True

    def _resolve(self, values: list) -> list[str]:
        out = []
        for v in values:
            ref = parse_ref(v)
            out.extend(self.jobs[ref.job_id].keys if ref else [v])
        return out

    def _fail(self, job: FakeJob, kind: str, message: str) -> None:
        job.state = JobState.FAILED
        job.error = {"type": kind, "message": message}

    def _execute(self, job: FakeJob) -> None:
        if self.failures.get(job.operation):
            self._fail(job, "InternalServerError", self.failures[job.operation].pop(0))
            return
        data = job.data
        if job.operation == "add_dataset":
            key = hashlib.sha256(Path(data["data_opener"]).read_bytes()).hexdigest()
            self.datasets.add(key)
            job.keys = [key]
        elif job.operation in ("add_data_samples", "add_data_sample"):
            paths = data.get("paths") or [data["path"]]
            datasets = self._resolve(data["data_manager_keys"])
            keys = [rd.sample_key(rd.walk(Path(p), self.root)) for p in paths]
            existing = [k for k in keys if k in self.samples]
            if existing and not job.options.get("exist_ok"):
                self._fail(job, "AlreadyExists", f"samples exist: {existing}")
                return
            for k in keys:
                self.samples.setdefault(k, set()).update(datasets)
            job.keys = keys
        elif job.operation == "link_dataset_with_data_samples":
            (dataset,) = self._resolve([data["dataset_key"]])
            keys = self._resolve(data["data_sample_keys"])
            for k in keys:
                self.samples[k].add(dataset)
            job.keys = keys
        job.state = JobState.SUCCEEDED
