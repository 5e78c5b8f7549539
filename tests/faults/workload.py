"""The bulk workload every fault scenario runs, and the check of what it left on the node.

A workload is a few hundred jobs, tiny in bytes: a dataset and an algo, one
``add_data_sample`` job per sample folder, a bulk ``add_data_samples`` job,
traintuples and a compute plan that refer to the sample jobs, and a few jobs
doomed to fail on the node (a traintuple naming an algo that does not exist),
so that "failed, with its reason" is checked too.

``check`` waits (bounded) until every job is final, then counts, by key on the
node (compute plans by their ``substra_worker_job`` metadata stamp):
lost jobs (never final, or succeeded without their asset), duplicated assets
(more than one per key or per job) and orphans (assets no succeeded job made).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from substra_worker import Client
from substra_worker.jobs import FINAL_STATES, Job, JobState
from substra_worker.submitter import Submitter
from substra_worker.tasks.effects import STAMP
from tests.assets import description_path, make_algo_archive, make_sample_folders, opener_path

PUBLIC = {"public": True, "authorized_ids": []}
MISSING_ALGO = "f" * 64  # a well-formed key no node holds: the doomed jobs' algo

_variants = iter(range(9000, 10000))


@dataclass
class Workload:
    """The jobs of one scenario, and which of them must fail (and why)."""

    tmp: Path
    tag: str
    jobs: list[Job] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # job id -> kind
    doomed: set[str] = field(default_factory=set)  # ids of the jobs that must fail
    dataset: Job | None = None
    algo: Job | None = None

    def add(self, job: Job, kind: str) -> Job:
        self.jobs.append(job)
        self.kinds[job.id] = kind
        return job

    def of_kind(self, kind: str) -> list[Job]:
        return [j for j in self.jobs if self.kinds[j.id] == kind]


def dataset_data(tmp: Path, tag: str) -> dict[str, Any]:
    return {
        "name": f"dataset {tag}",
        "type": "csv",
        "data_opener": str(opener_path(tmp / "openers", variant=next(_variants))),
        "description": str(description_path(f"# dataset {tag}\n", tmp / "descriptions")),
        "permissions": PUBLIC,
    }


def algo_data(tmp: Path, tag: str) -> dict[str, Any]:
    return {
        "name": f"algo {tag}",
        "file": str(make_algo_archive("algo", tmp / "archives", variant=next(_variants))),
        "description": str(description_path(f"# algo {tag}\n", tmp / "descriptions")),
        "permissions": PUBLIC,
    }


def submit_workload(
    submitter: Submitter,
    tmp: Path,
    tag: str,
    *,
    samples: int = 240,
    tuples: int = 3,
    bulk: int = 8,
    doomed: int = 2,
    plan: bool = True,
    into: Workload | None = None,
    part: str = "a",
    on_submit: Callable[[int], None] | None = None,
) -> Workload:
    """Submit the standard workload (into ``into``, whose dataset and algo it reuses).

    ``part`` tells apart the sample folders of several calls on one workload;
    ``on_submit(n)`` runs after the n-th job of this call is submitted.
    """
    w = into or Workload(tmp, tag)
    folders = make_sample_folders(tmp / "samples", samples + bulk, prefix=f"{tag}-{part}-")
    count = 0

    def added(job: Job, kind: str) -> Job:
        nonlocal count
        w.add(job, kind)
        count += 1
        if on_submit is not None:
            on_submit(count)
        return job

    if w.dataset is None:
        w.dataset = added(submitter.add_dataset(dataset_data(tmp, tag)), "dataset")
    if w.algo is None:
        w.algo = added(submitter.add_algo(algo_data(tmp, tag)), "algo")
    sample_jobs: list[Job] = []
    # where the other jobs go among the samples (early, so that they meet the faults)
    tuples_at, plan_at, doomed_at = (min(n, samples - 1) for n in (10, 20, 30))
    for i in range(samples):
        data = {"path": str(folders[i]), "data_manager_keys": [w.dataset]}
        sample_jobs.append(added(submitter.add_data_sample(data), "sample"))
        if i == tuples_at:
            for t in range(tuples):
                data = {
                    "algo_key": w.algo,
                    "data_manager_key": w.dataset,
                    "train_data_sample_keys": [sample_jobs[t]],
                    "tag": f"{tag} {part} tuple {t}",
                }
                added(submitter.add_traintuple(data), "traintuple")
        if i == plan_at and plan:
            added(
                submitter.add_compute_plan(plan_data(w, sample_jobs[tuples : tuples + 2])), "plan"
            )
        if i == doomed_at:
            for d in range(doomed):
                data = {
                    "algo_key": MISSING_ALGO,
                    "data_manager_key": w.dataset,
                    "train_data_sample_keys": [sample_jobs[d]],
                    "tag": f"{tag} {part} doomed {d}",
                }
                job = added(submitter.add_traintuple(data), "doomed")
                w.doomed.add(job.id)
        if i == samples // 2 and bulk:
            paths = [str(f) for f in folders[samples : samples + bulk]]
            data = {"paths": paths, "data_manager_keys": [w.dataset]}
            added(submitter.add_data_samples(data), "bulk")
    return w


def plan_data(w: Workload, samples: list[Job]) -> dict[str, Any]:
    """Two chained traintuples, on two of the workload's samples."""
    base = {"algo_key": w.algo, "data_manager_key": w.dataset}
    return {
        "traintuples": [
            {"traintuple_id": "first", **base, "train_data_sample_keys": [samples[0]]},
            {
                "traintuple_id": "second",
                **base,
                "train_data_sample_keys": [samples[1]],
                "in_models_ids": ["first"],
            },
        ],
        "tag": f"plan {w.tag}",
        "metadata": {"scenario": w.tag},
    }


# --- checking ---------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a scenario did to its jobs, counted as the Reliability table shows it."""

    submitted: int
    succeeded: int
    failed: int
    lost: int
    duplicated: int
    orphaned: int
    problems: list[str]
    seconds: float = 0.0
    swept: int = 0  # jobs stuck with no message that the recovery sweep sent again

    def row(self, scenario: str, title: str, **extra: Any) -> dict[str, Any]:
        return {
            "scenario": scenario,
            "title": title,
            "submitted": self.submitted,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "orphaned": self.orphaned,
            "recovered_by_sweep": self.swept,
            **extra,
        }


def wait_final(jobs: list[Job], timeout: float) -> list[Job]:
    """Wait until every job is final (or ``timeout`` seconds passed); return those still not."""
    deadline = time.monotonic() + timeout
    pending = list(jobs)
    while pending:
        store = pending[0]._store
        pipe = store.redis.pipeline(transaction=False)
        for job in pending:
            pipe.hget(store.job_key(job.id), "state")
        states = pipe.execute()
        pending = [
            job
            for job, state in zip(pending, states, strict=True)
            if state is None or JobState(state) not in FINAL_STATES
        ]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    for job in jobs:
        with contextlib.suppress(KeyError):  # a purged record: counted as lost by the caller
            job.refresh()
    return pending


def progress(jobs: list[Job]) -> Counter:
    """How many jobs are in each state right now."""
    if not jobs:
        return Counter()
    store = jobs[0]._store
    pipe = store.redis.pipeline(transaction=False)
    for job in jobs:
        pipe.hget(store.job_key(job.id), "state")
    return Counter(s or "missing" for s in pipe.execute())


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def check(
    w: Workload,
    client: Client,
    *,
    timeout: float = 120.0,
    sweep_after: float = 45.0,
    app: Any = None,
) -> Outcome:
    """Wait for the jobs to end, then compare their outcomes with what the node holds.

    Jobs still active after ``sweep_after`` seconds get the recovery sweep that
    every worker runs on its own only every few minutes (``tasks.recovery``),
    sent with ``app``; how many it sent again is ``Outcome.swept``.
    """
    started = time.monotonic()
    stuck = wait_final(w.jobs, min(timeout, sweep_after))
    swept: list[str] = []
    if stuck and app is not None:
        from substra_worker.tasks.app import send_job
        from substra_worker.tasks.recovery import recover

        store = w.jobs[0]._store
        swept = recover(store, lambda job_id, n: send_job(app, job_id, n), older_than=0)
        stuck = wait_final(stuck, max(1.0, timeout - (time.monotonic() - started)))
    problems: list[str] = [f"{w.kinds[j.id]} job {j.id} stuck {j.state.value}" for j in stuck]
    succeeded = [j for j in w.jobs if j.state is JobState.SUCCEEDED]
    failed = [j for j in w.jobs if j.state is JobState.FAILED]
    lost = len(stuck)
    for job in failed:
        error = job.error or {}
        if not error.get("type") or not error.get("message"):
            problems.append(f"failed job {job.id} carries no reason: {error}")
        if job.id not in w.doomed:
            problems.append(f"{w.kinds[job.id]} job {job.id} failed: {error}")
    for job_id in w.doomed:
        if job_id not in {j.id for j in failed}:
            problems.append(f"doomed job {job_id} did not fail")

    # every key a succeeded job produced, per asset list on the node
    expected: dict[str, Counter] = {
        "dataset": Counter(),
        "algo": Counter(),
        "sample": Counter(),
        "traintuple": Counter(),
    }
    plan_jobs = []
    for job in succeeded:
        kind = w.kinds[job.id]
        if kind in ("sample",):
            expected["sample"][job.key] += 1
        elif kind == "bulk":
            for key in job.keys:
                expected["sample"][key] += 1
        elif kind in ("dataset", "algo", "traintuple"):
            expected[kind][job.key] += 1
        elif kind == "plan":
            plan_jobs.append(job)
            for key in (job.result or {}).get("id_to_key", {}).values():
                expected["traintuple"][key] += 1
    on_node = {
        "dataset": Counter(d["key"] for d in client.list_dataset()),
        "algo": Counter(a["key"] for a in client.list_algo()),
        "sample": Counter(s["key"] for s in client.list_data_sample()),
        "traintuple": Counter(t["key"] for t in client.list_traintuple()),
    }
    duplicated = orphaned = 0
    for kind, wanted in expected.items():
        held = on_node[kind]
        for key, n in wanted.items():
            if n > 1:
                # two succeeded jobs share a content key: legitimate only for samples
                # submitted twice, which the workload never does
                problems.append(f"{n} succeeded {kind} jobs report key {key}")
            if held[key] == 0:
                lost += 1
                problems.append(f"{kind} {key} of a succeeded job is not on the node")
        for key, n in held.items():
            if n > 1:
                duplicated += n - 1
                problems.append(f"{kind} {key} is {n} times on the node")
            if key not in wanted:
                orphaned += 1
                problems.append(f"{kind} {key} on the node belongs to no succeeded job")
    plans = client.list_compute_plan()
    stamps = Counter((p.get("metadata") or {}).get(STAMP) for p in plans)
    for job in (j for j in w.jobs if w.kinds[j.id] == "plan"):
        n = stamps.pop(job.id, 0)
        if job.state is JobState.SUCCEEDED and n == 0:
            lost += 1
            problems.append(f"plan of job {job.id} is not on the node")
        if n > 1:
            duplicated += n - 1
            problems.append(f"plan of job {job.id} is {n} times on the node")
        if job.state is not JobState.SUCCEEDED and n:
            orphaned += n
            problems.append(f"plan of {job.state.value} job {job.id} is on the node")
    for stamp, n in stamps.items():
        orphaned += n
        problems.append(f"{n} plan(s) on the node with stamp {stamp!r} of no job")
    return Outcome(
        submitted=len(w.jobs),
        succeeded=len(succeeded),
        failed=len(failed),
        lost=lost,
        duplicated=duplicated,
        orphaned=orphaned,
        problems=problems,
        seconds=time.monotonic() - started,
        swept=len(swept),
    )
