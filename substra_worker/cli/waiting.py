"""Waiting for jobs from the command line (``--wait``, ``--follow``), with progress bars.

One Redis round trip per poll whatever the number of jobs (a pipeline of
HMGETs), so waiting for a bulk submission of thousands stays cheap.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import click

from substra_worker.cli.output import EXIT_JOB, EXIT_OK, EXIT_TIMEOUT, progress_bar
from substra_worker.submitter import Submitter

POLL_INTERVAL = 0.3  # seconds between two polls of the status store
FAILED_PROGRESS = {"failed", "canceled"}  # final node statuses of a followed tuple or plan


@dataclass
class Status:
    """What a poll learns about one job."""

    id: str
    state: str | None  # None: the record is gone (purged or expired)
    operation: str = ""
    followed: bool = False  # submitted with follow: its tuple or plan is tracked
    progress: dict[str, Any] = field(default_factory=dict)

    def final(self, follow: bool) -> bool:
        if self.state is None or self.state in ("failed", "canceled"):
            return True
        if self.state != "succeeded":
            return False
        if follow and self.followed:
            return bool(self.progress.get("final"))
        return True

    def ok(self, follow: bool) -> bool:
        """Succeeded (and, when followed, its tuple or plan ended done)."""
        if self.state != "succeeded":
            return False
        if follow and self.followed:
            if self.progress.get("status") in FAILED_PROGRESS:
                return False
            if self.progress.get("error") and self.progress.get("status") != "done":
                return False
        return True


def poll(submitter: Submitter, ids: list[str]) -> list[Status]:
    """The state, progress and follow flag of each job, in one round trip."""
    store = submitter.store
    pipe = store.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(store.job_key(job_id), ["state", "operation", "progress", "envelope"])
    out = []
    for job_id, (state, operation, progress, envelope) in zip(ids, pipe.execute(), strict=True):
        followed = bool(envelope) and bool(json.loads(envelope).get("follow"))
        out.append(
            Status(
                job_id,
                state or None,
                operation or "",
                followed,
                json.loads(progress) if progress else {},
            )
        )
    return out


def wait(
    submitter: Submitter,
    ids: list[str],
    *,
    follow: bool = False,
    timeout: float | None = None,
    interval: float = POLL_INTERVAL,
) -> tuple[list[Status], bool]:
    """Poll until every job is final (and followed ones' tuples or plans too).

    Returns the last statuses and whether ``timeout`` seconds passed first.
    Shows a spinner for one job, a bar of tuples done for one followed plan, a
    bar of finished jobs for several.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with progress_bar() as bar:
        task = bar.add_task("waiting", total=len(ids) if len(ids) > 1 else None)
        while True:
            statuses = poll(submitter, ids)
            _show(bar, task, statuses, follow)
            if all(s.final(follow) for s in statuses):
                return statuses, False
            if deadline is not None and time.monotonic() >= deadline:
                return statuses, True
            time.sleep(interval)


def _show(bar: Any, task: Any, statuses: list[Status], follow: bool) -> None:
    if len(statuses) == 1:
        s = statuses[0]
        text = f"job {s.id[:8]} {s.operation}: {s.state or 'gone'}"
        if follow and s.followed and s.progress.get("total"):
            text += f" (node: {s.progress.get('status')})"
            bar.update(
                task,
                description=text,
                total=s.progress["total"],
                completed=s.progress.get("done", 0),
            )
        else:
            bar.update(task, description=text, completed=1 if s.final(follow) else 0)
        return
    done = sum(1 for s in statuses if s.final(follow))
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.state or "gone"] = counts.get(s.state or "gone", 0) + 1
    text = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    bar.update(task, description=f"jobs: {text}", completed=done)


def outcome(
    statuses: list[Any],
    records: list[dict[str, Any]],
    *,
    follow: bool,
    timed_out: bool,
    timeout: float | None,
) -> int:
    """The exit code of a wait, with its one-line reason on stderr."""
    bad = [s for s in statuses if s.final(follow) and not s.ok(follow)]
    if bad:
        first = next(r for r in records if r["id"] == bad[0].id)
        click.echo(f"error: {_failure_line(first, bad[0], follow)}", err=True)
        if len(bad) > 1:
            click.echo(f"error: {len(bad)} of {len(statuses)} jobs did not succeed", err=True)
        return EXIT_JOB
    if timed_out:
        pending = [s for s in statuses if not s.final(follow)]
        click.echo(
            f"error: {len(pending)} job(s) not finished after {timeout:g}s "
            f"(first: {pending[0].id} {pending[0].state})",
            err=True,
        )
        return EXIT_TIMEOUT
    return EXIT_OK


def _failure_line(record: dict[str, Any], status: Any, follow: bool) -> str:
    job = f"job {record['id']} ({record['operation']})"
    if status.state is None:
        return f"{job} is gone (purged or expired)"
    if record["state"] != "succeeded":
        error = record.get("error") or {}
        what = f"{error.get('type')}: {error.get('message')}" if error else record["state"]
        return f"{job} {record['state']}: {what}"
    progress = record.get("progress") or {}
    detail = progress.get("status") or (progress.get("error") or {}).get("message")
    return f"{job} succeeded but what it created ended {detail} on the node"
