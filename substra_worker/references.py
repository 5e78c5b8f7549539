"""References: a payload value that stands for the result of another job.

A reference is a plain string, so it travels unchanged through JSON (the HTTP
API, the CLI's job files, the watcher)::

    "$job:<job id>"            the job's asset key (for add_data_samples: all its
                               sample keys, spliced into the list that holds it)
    "$job:<job id>#<path>"     a dotted path into the job's result
                               {"key", "keys", "answer", "id_to_key"}, e.g.
                               "#keys.0", "#id_to_key.train-1", "#answer.computePlanID"

At submit time each reference is replaced by a placeholder 64-hex key for
validation, so a reference is accepted wherever a key is expected. When the
job runs, every reference is replaced by the value it names.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from substra_worker.jobs import JobState
    from substra_worker.status_store import StatusStore

PREFIX = "$job:"
_PATTERN = re.compile(r"^\$job:(?P<id>[0-9a-f]{32})(?:#(?P<path>\S+))?$")


class BadReference(ValueError):
    """Raised when a reference is malformed or names a value its job did not produce."""


@dataclass(frozen=True)
class Ref:
    """One reference found in a payload."""

    job_id: str
    path: str | None = None

    def __str__(self) -> str:
        return make_ref(self.job_id, self.path)

    @property
    def placeholder(self) -> str:
        """A 64-hex stand-in key for validation, distinct per reference."""
        return hashlib.sha256(str(self).encode()).hexdigest()


def make_ref(job_id: str, path: str | None = None) -> str:
    """The string that refers to ``job_id``'s result (or the value at ``path`` in it)."""
    return f"{PREFIX}{job_id}#{path}" if path else f"{PREFIX}{job_id}"


def parse_ref(value: Any) -> Ref | None:
    """The reference ``value`` stands for, or None when it is not a reference.

    A string that starts with ``$job:`` but is malformed is an error rather than
    a silently kept literal.
    """
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return None
    match = _PATTERN.match(value)
    if match is None:
        raise BadReference(f"malformed reference {value!r}: expected '$job:<32-hex job id>[#path]'")
    return Ref(match["id"], match["path"])


def normalize(value: Any) -> Any:
    """``value`` with every ``Job`` object replaced by its reference string."""
    from substra_worker.jobs import Job

    if isinstance(value, Job):
        return make_ref(value.id)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    return value


def find_refs(value: Any) -> list[Ref]:
    """Every reference in ``value``, in order of appearance, without duplicates."""
    found: dict[Ref, None] = {}

    def walk(v: Any) -> None:
        ref = parse_ref(v)
        if ref is not None:
            found.setdefault(ref)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)
        elif isinstance(v, list | tuple):
            for item in v:
                walk(item)

    walk(value)
    return list(found)


def with_placeholders(value: Any) -> Any:
    """``value`` with each reference replaced by its placeholder key (for validation)."""
    ref = parse_ref(value)
    if ref is not None:
        return ref.placeholder
    if isinstance(value, dict):
        return {k: with_placeholders(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [with_placeholders(v) for v in value]
    return value


def lookup(result: dict[str, Any] | None, ref: Ref) -> Any:
    """The value ``ref`` names in its job's ``result``."""
    result = result or {}
    if ref.path is None:
        if result.get("key"):
            return result["key"]
        if result.get("keys"):
            return list(result["keys"])
        raise BadReference(f"job {ref.job_id} produced no key to refer to")
    value: Any = result
    for part in ref.path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(value) <= index < len(value):
                raise BadReference(f"{ref}: index {index} out of range")
            value = value[index]
        else:
            hint = " (the stored answer was truncated)" if result.get("truncated") else ""
            raise BadReference(f"{ref}: no {part!r} in the job's result{hint}")
    return value


def resolve(value: Any, results: dict[str, dict[str, Any] | None]) -> Any:
    """``value`` with each reference replaced by what it names in ``results`` (by job id).

    A reference that names a list and sits inside a list is spliced into it, so
    ``"train_data_sample_keys": ["$job:<bulk samples job>"]`` becomes every key.
    """
    ref = parse_ref(value)
    if ref is not None:
        resolved = lookup(results.get(ref.job_id), ref)
        if isinstance(resolved, list):
            if len(resolved) != 1:
                raise BadReference(f"{ref} names {len(resolved)} keys where one value is expected")
            return resolved[0]
        return resolved
    if isinstance(value, dict):
        return {k: resolve(v, results) for k, v in value.items()}
    if isinstance(value, list | tuple):
        out: list[Any] = []
        for item in value:
            item_ref = parse_ref(item)
            if item_ref is not None:
                resolved = lookup(results.get(item_ref.job_id), item_ref)
                if isinstance(resolved, list):
                    out.extend(resolved)
                else:
                    out.append(resolved)
            else:
                out.append(resolve(item, results))
        return out
    return value


# --- waiting on references ------------------------------------------------------------
# A job that references unfinished jobs is recorded `waiting` and listed in the
# `waiters` set of each of them; it has no message and holds no worker slot. Each
# time a job finishes, its waiters are re-checked: queued (and sent) once every
# reference succeeded, failed as soon as one failed. The state change is a
# compare-and-set, so when a producer and a worker re-check at the same moment
# only one of them sends the message.

Sender = Callable[[str, int], None]  # (job id, dispatch number) -> send the job's message


def reference_error(
    store: StatusStore, references_: list[str]
) -> tuple[bool, dict[str, Any] | None]:
    """``(ready, error)`` for a job's references: all succeeded, or the first failure."""
    from substra_worker.jobs import JobState

    ready = True
    for ref_id in references_:
        fields = store.get_fields(ref_id, "state", "operation", "error")
        state = fields["state"]
        if state is None:
            return False, _ref_error(ref_id, None, "no longer exists (purged or expired)")
        if state in (JobState.FAILED.value, JobState.CANCELED.value):
            cause = fields["error"] or {}
            detail = f"{cause.get('type')}: {cause.get('message')}" if cause else state
            return False, _ref_error(ref_id, fields["operation"], f"{state}: {detail}")
        if state != JobState.SUCCEEDED.value:
            ready = False
    return ready, None


def _ref_error(ref_id: str, operation: str | None, what: str) -> dict[str, Any]:
    name = f"{operation} job {ref_id}" if operation else f"job {ref_id}"
    return {
        "type": "ReferenceFailed",
        "message": f"referenced {name} {what}",
        "reference": ref_id,
        "retryable": False,
    }


def release(store: StatusStore, job_id: str, send: Sender) -> None:
    """Re-check the references of ``job_id`` and of every job that waits on it.

    Called when a job finishes (by the worker) and right after a waiting job is
    recorded (by the producer, in case its references finished meanwhile).
    """
    from substra_worker.jobs import JobState

    pending = [job_id]
    seen: set[str] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        candidates = [current, *store.waiters(current)]
        for candidate in candidates:
            outcome = _recheck(store, candidate, send)
            if outcome is JobState.FAILED:
                pending.append(candidate)  # its own waiters fail too
            if candidate != current and outcome is not None:
                store.remove_waiter(current, candidate)
        state = store.state(current)
        if state is None or state.final:
            # the waiters of a finished job have all been moved on
            for waiter in store.waiters(current):
                waiter_state = store.state(waiter)
                if waiter_state is None or waiter_state is not JobState.WAITING:
                    store.remove_waiter(current, waiter)


def _recheck(store: StatusStore, job_id: str, send: Sender) -> JobState | None:
    """Queue or fail one waiting job if its references allow it; return its new state."""
    from substra_worker.jobs import JobState  # noqa: F811 - runtime import of the annotation

    fields = store.get_fields(job_id, "state", "envelope")
    if fields["state"] != JobState.WAITING.value:
        return None
    refs = (fields["envelope"] or {}).get("references") or []
    ready, error = reference_error(store, refs)
    if error is not None:
        t = store.transition(
            job_id,
            JobState.FAILED,
            allowed=[JobState.WAITING],
            message=error["message"],
            fields={"error": error},
        )
        return JobState.FAILED if t.ok else None
    if ready:
        t = store.transition(
            job_id,
            JobState.QUEUED,
            allowed=[JobState.WAITING],
            message="references succeeded",
            dispatch=True,
        )
        if t.ok:
            try:
                send(job_id, t.dispatch)
            except Exception:
                # back to waiting, so the next release (or the recovery sweep) sends it;
                # if even that fails, the sweep finds it queued without a message
                with contextlib.suppress(Exception):
                    store.transition(
                        job_id,
                        JobState.WAITING,
                        allowed=[JobState.QUEUED],
                        message="its message could not be sent: waiting again",
                    )
                raise
            return JobState.QUEUED
    return None
