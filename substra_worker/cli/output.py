"""What the job commands print, and the exit codes scripts rely on.

Every job command (``submit``, ``job``, ``jobs``, ``retry``, ``cancel``,
``purge``) prints rich tables for people and, with ``--json``, one JSON
document on stdout for scripts. Errors become one line on stderr (and, with
``--json``, an ``{"error": ...}`` document on stdout) and one of the exit
codes below, in one place: ``CliError`` and ``guard``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

# --- exit codes -----------------------------------------------------------------------------

EXIT_OK = 0  # the command did what it was asked; a waited job succeeded
EXIT_JOB = 1  # a job failed or was canceled, is not found, or its state forbids the action
EXIT_USAGE = 2  # bad command line or invalid input (the reason names the field)
EXIT_REDIS = 3  # no Redis configured, or Redis cannot be reached
EXIT_TIMEOUT = 4  # --timeout elapsed before the waited job(s) finished

EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    "  0  success (with --wait/--follow: every job succeeded)\n"
    "  1  a job failed or was canceled, was not found, or its state forbids the action\n"
    "  2  usage error or invalid input (one line on stderr names the field)\n"
    "  3  no Redis configured, or Redis cannot be reached\n"
    "  4  --timeout elapsed before the job(s) finished"
)
"""Appended to each job command's help, so the codes are documented where they are used."""

PIPE_WIDTH = 160  # columns of tables written to a pipe or a file (no terminal to fit)
SHORT_ID = 12  # characters of a job id in tables; every command accepts a unique prefix


class _Stdout:
    """The stdout console, made when printing (stdout may have been replaced meanwhile)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        out = Console(highlight=False)
        if not out.is_terminal:
            out = Console(highlight=False, width=PIPE_WIDTH)
        out.print(*objects, **kwargs)


console = _Stdout()  # stdout: tables and results
err_console = Console(stderr=True, highlight=False)  # stderr: progress bars and reasons


class CliError(Exception):
    """Raised to end a command with ``code`` and a one-line ``message``."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        kind: str = "Error",
        errors: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = kind
        self.errors = errors
        self.extra = extra or {}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "type": self.kind, "message": self.message}
        if self.errors:
            out["errors"] = self.errors
        out.update(self.extra)
        return {"error": out}


def fields_line(errors: dict[str, Any]) -> str:
    """``{"payload.name": ["Missing data."]}`` as ``payload.name: Missing data.`` (one line)."""
    parts = []
    for field, messages in errors.items():
        if isinstance(messages, list | tuple):
            text = " ".join(str(m) for m in messages)
        else:
            text = str(messages)
        parts.append(f"{field}: {text}")
    return "; ".join(parts).replace("\n", " ")


def error_for(exc: BaseException) -> CliError | None:
    """The ``CliError`` an exception of the queue API stands for (None: not ours)."""
    import redis
    from kombu.exceptions import OperationalError

    from substra_worker.jobs import JobCanceled, JobFailed, JobNotFound, JobStateError
    from substra_worker.sdk.exceptions import ConfigurationError, InvalidInput

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, InvalidInput):
        errors = {k: v if isinstance(v, list) else [str(v)] for k, v in (exc.errors or {}).items()}
        line = fields_line(errors) if errors else str(exc)
        return CliError(EXIT_USAGE, f"invalid input: {line}", kind="InvalidInput", errors=errors)
    if isinstance(exc, JobNotFound):
        return CliError(EXIT_JOB, str(exc), kind="JobNotFound")
    if isinstance(exc, JobStateError):
        return CliError(EXIT_JOB, str(exc), kind="JobStateError")
    if isinstance(exc, JobFailed | JobCanceled):
        return CliError(EXIT_JOB, str(exc), kind=type(exc).__name__)
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return CliError(EXIT_REDIS, f"lost the connection to Redis: {exc}", kind="RedisError")
    if isinstance(exc, OperationalError):
        return CliError(EXIT_REDIS, f"cannot send the job's message: {exc}", kind="RedisError")
    if isinstance(exc, ConfigurationError):
        return CliError(EXIT_REDIS, str(exc), kind="ConfigurationError")
    return None


def fail(error: CliError, *, as_json: bool) -> NoReturn:
    """Print ``error`` (stderr line, plus JSON on stdout for scripts) and exit with its code."""
    if as_json:
        print_json(error.to_json())
    click.echo(f"error: {error.message}", err=True)
    sys.exit(error.code)


@contextlib.contextmanager
def guard(*, as_json: bool) -> Iterator[None]:
    """Turn the queue API's exceptions into one stderr line and an exit code."""
    try:
        yield
    except click.exceptions.Exit:
        raise
    except click.ClickException:
        raise
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:
        error = error_for(e)
        if error is None:
            raise
        fail(error, as_json=as_json)


# --- JSON -----------------------------------------------------------------------------------


def print_json(data: Any) -> None:
    """One JSON document on stdout (plain, so pipes get exact bytes)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


# --- human output ---------------------------------------------------------------------------

STATE_STYLES = {
    "queued": "cyan",
    "waiting": "blue",
    "running": "yellow",
    "retrying": "magenta",
    "succeeded": "green",
    "failed": "bold red",
    "canceled": "dim",
}


def when(epoch: float | None) -> str:
    if not epoch:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(epoch)))


def short_when(epoch: float | None) -> str:
    """The time alone for today, the date and time otherwise."""
    if not epoch:
        return ""
    moment = time.localtime(float(epoch))
    if time.strftime("%Y-%m-%d", moment) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", moment)
    return time.strftime("%Y-%m-%d %H:%M", moment)


def styled_state(state: str | None) -> str:
    state = state or "?"
    style = STATE_STYLES.get(state)
    return f"[{style}]{state}[/{style}]" if style else state


def record_key(record: dict[str, Any]) -> str:
    """The asset key a record produced, or a count of keys for bulk jobs."""
    result = record.get("result") or {}
    if result.get("key"):
        return str(result["key"])
    keys = result.get("keys") or []
    if len(keys) == 1:
        return str(keys[0])
    return f"{len(keys)} keys" if keys else ""


def record_note(record: dict[str, Any]) -> str:
    """The most useful short text about a record: its error, progress or last message."""
    error = record.get("error")
    if error:
        return f"{error.get('type') or 'Error'}: {error.get('message') or ''}"
    progress = record.get("progress") or {}
    if progress.get("total"):
        status = f"{progress['status']} " if progress.get("status") else ""
        return f"{status}{progress.get('done', 0)}/{progress['total']}"
    if record.get("state") in ("succeeded", "canceled"):
        return ""
    history = record.get("history") or []
    return str(history[-1].get("message") or "") if history else ""


def jobs_table(records: Iterable[dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title)
    table.add_column("job", no_wrap=True, min_width=SHORT_ID)
    table.add_column("operation", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("producer", no_wrap=True, overflow="ellipsis")
    table.add_column("key", no_wrap=True, overflow="ellipsis")
    table.add_column("updated", no_wrap=True)
    table.add_column("note", no_wrap=True, overflow="ellipsis", min_width=10)
    for r in records:
        table.add_row(
            r.get("id", "")[:SHORT_ID],
            r.get("operation", ""),
            styled_state(r.get("state")),
            escape(r.get("producer") or ""),
            escape(record_key(r)[:SHORT_ID]),
            short_when(r.get("updated_at")),
            escape(record_note(r)),
        )
    return table


def job_details(record: dict[str, Any]) -> list[Table]:
    """A record as tables: its summary, then its attempts and history."""
    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_column(style="bold", no_wrap=True)
    summary.add_column(overflow="fold")
    envelope = record.get("envelope") or {}
    rows: list[tuple[str, str]] = [
        ("job", record.get("id", "")),
        ("operation", record.get("operation", "")),
        ("state", styled_state(record.get("state"))),
        ("producer", escape(record.get("producer") or "")),
        ("created", when(record.get("created_at"))),
        ("updated", when(record.get("updated_at"))),
    ]
    if record.get("finished_at"):
        rows.append(("finished", when(record.get("finished_at"))))
    if record.get("idempotency_key"):
        rows.append(("idempotency key", escape(record["idempotency_key"])))
    if record.get("target"):
        rows.append(("target", escape(record["target"])))
    if envelope.get("references"):
        rows.append(("waits for", ", ".join(envelope["references"])))
    result = record.get("result") or {}
    if result.get("key"):
        rows.append(("key", result["key"]))
    if result.get("keys") and not result.get("key"):
        rows.append(("keys", "\n".join(result["keys"])))
    progress = record.get("progress") or {}
    if progress:
        rows.append(("progress", escape(record_note({"progress": progress}))))
        if progress.get("error"):
            rows.append(("progress error", escape(str(progress["error"].get("message")))))
    error = record.get("error")
    if error:
        rows.append(("error", escape(f"{error.get('type')}: {error.get('message')}")))
        rows.append(("retryable", "yes" if error.get("retryable") else "no"))
    rows.append(("attempts", str(record.get("attempt_count", 0))))
    for name, value in rows:
        summary.add_row(name, value)
    tables = [summary]
    attempts = record.get("attempts") or []
    if attempts:
        table = Table(title="attempts")
        for col in ("#", "start", "end", "worker", "outcome", "error"):
            table.add_column(col, overflow="fold")
        for a in attempts:
            err = ""
            if a.get("error_class"):
                err = f"{a.get('error_class')}: {a.get('error_message') or ''}"
            table.add_row(
                str(a.get("number", "")),
                when(a.get("start")),
                when(a.get("end")),
                escape(str(a.get("worker") or "")),
                escape(str(a.get("outcome") or "")),
                escape(err),
            )
        tables.append(table)
    history = record.get("history") or []
    if history:
        table = Table(title="history")
        for col in ("at", "state", "message"):
            table.add_column(col, overflow="fold")
        for h in history:
            table.add_row(
                when(h.get("at")), styled_state(h.get("state")), escape(h.get("message") or "")
            )
        tables.append(table)
    return tables


def print_job(record: dict[str, Any]) -> None:
    for table in job_details(record):
        console.print(table)


def progress_bar(*, transient: bool = False) -> Progress:
    """A progress display on stderr; silent when stderr is not a terminal."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=transient,
        disable=not err_console.is_terminal,
    )
