"""Pages of job summaries with a stable cursor, read from the status store's indexes.

``Submitter.list_jobs`` pages by offset, which repeats or skips jobs while new
ones arrive. The API pages by cursor instead: the cursor is the (score, id) of
the last job of a page in the index being walked (``sw:jobs`` and
``sw:op:<op>`` score by creation, ``sw:state:<s>`` and ``sw:opstate:<op>:<s>``
by last update), so the next page starts strictly after it. Records are read
in one pipeline per page; their history and attempt lists are left out, they
are what ``GET /jobs/{id}`` is for.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from substra_worker.jobs import JobState
from substra_worker.status_store import StatusStore

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_JSON_FIELDS = ("envelope", "result", "error", "progress")
_FLOAT_FIELDS = ("created_at", "updated_at", "started_at", "finished_at", "next_attempt_at")
_INT_FIELDS = ("attempts", "run_attempts", "dispatch")
_RESULT_SUMMARY = ("key", "count", "truncated")


class BadCursor(ValueError):
    """Raised when a cursor was not made by this API (or was altered)."""


@dataclass(frozen=True)
class Page:
    jobs: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(score: float, job_id: str) -> str:
    raw = f"{score!r}:{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score_text, job_id = raw.split(":", 1)
        score = float(score_text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise BadCursor("not a cursor of this API") from e
    if not JOB_ID_RE.match(job_id) or score != score or score in (float("inf"), float("-inf")):
        raise BadCursor("not a cursor of this API")
    return score, job_id


def index_key(store: StatusStore, state: JobState | None, operation: str | None) -> str:
    p = store.prefix
    if state is not None and operation:
        return f"{p}opstate:{operation}:{state.value}"
    if state is not None:
        return f"{p}state:{state.value}"
    if operation:
        return f"{p}op:{operation}"
    return f"{p}jobs"


def list_page(
    store: StatusStore,
    *,
    state: JobState | None = None,
    operation: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """Job summaries, newest first, after ``cursor``; ``next_cursor`` is None on the last page."""
    index = index_key(store, state, operation)
    after: tuple[float, str] | None = decode_cursor(cursor) if cursor else None
    top: Any = repr(after[0]) if after else "+inf"
    found: list[tuple[float, dict[str, Any]]] = []
    offset = 0
    chunk = limit + 1
    while len(found) <= limit:
        rows = store.redis.zrevrangebyscore(
            index, top, "-inf", start=offset, num=chunk, withscores=True
        )
        if not rows:
            break
        offset += len(rows)
        # equal scores come in reverse id order: skip the cursor and what preceded it
        rows = [(i, s) for i, s in rows if not (after and s == after[0] and i >= after[1])]
        records = _load_many(store, [i for i, _ in rows])
        for (_, score), record in zip(rows, records, strict=True):
            if record is not None:  # None: a finished record that expired
                found.append((score, record))
        chunk = max(chunk, 100)
    jobs = [summary(record) for _, record in found[:limit]]
    next_cursor = None
    if len(found) > limit:
        score, record = found[limit - 1]
        next_cursor = encode_cursor(score, record["id"])
    return Page(jobs, next_cursor)


def _load_many(store: StatusStore, ids: list[str]) -> list[dict[str, Any] | None]:
    if not ids:
        return []
    pipe = store.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(store.job_key(job_id))
        pipe.llen(f"{store.job_key(job_id)}:keys")
    raw = pipe.execute()
    out: list[dict[str, Any] | None] = []
    for fields, key_count in zip(raw[::2], raw[1::2], strict=True):
        if not fields or "id" not in fields:
            out.append(None)
            continue
        record = {name: _decode(name, value) for name, value in fields.items()}
        if record.get("result") is not None and record.get("operation") == "add_data_samples":
            record["result"].setdefault("count", int(key_count))
        out.append(record)
    return out


def _decode(name: str, value: str) -> Any:
    if value == "":
        return 0 if name in _INT_FIELDS else None
    try:
        if name in _JSON_FIELDS:
            return json.loads(value)
        if name in _INT_FIELDS:
            return int(value)
        if name in _FLOAT_FIELDS:
            return float(value)
    except ValueError:
        return None
    return value


def source_of(envelope: dict[str, Any] | None) -> str | None:
    """The folder(s) a sample job reads, for display: ``path``, or the first of ``paths``."""
    payload = (envelope or {}).get("payload") or {}
    if isinstance(payload.get("path"), str):
        return payload["path"]
    paths = payload.get("paths")
    if isinstance(paths, list) and paths and isinstance(paths[0], str):
        more = len(paths) - 1
        return paths[0] + (f" (+{more} more)" if more else "")
    return None


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """What a list shows of a job: no payload, history or attempt list."""
    envelope = record.get("envelope") or {}
    result = record.get("result")
    return {
        "id": record["id"],
        "operation": record.get("operation"),
        "producer": record.get("producer"),
        "source": source_of(envelope),
        "state": record.get("state"),
        "target": record.get("target") or None,
        "idempotency_key": record.get("idempotency_key") or None,
        "references": list(envelope.get("references") or []),
        "follow": bool(envelope.get("follow")),
        "attempt_count": int(record.get("attempts") or 0),
        "created_at": record.get("created_at"),
        "updated_at": record.get("updated_at"),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "next_attempt_at": record.get("next_attempt_at"),
        "progress": record.get("progress"),
        "result": {k: result[k] for k in _RESULT_SUMMARY if k in result}
        if isinstance(result, dict)
        else None,
        "error": record.get("error"),
    }


def full(record: dict[str, Any]) -> dict[str, Any]:
    """The whole record (``StatusStore.load``) with its display source."""
    out = dict(record)
    out["source"] = source_of(record.get("envelope"))
    return out
