"""``substra-worker submit OPERATION FILE.json``: queue jobs from a JSON payload file."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from substra_worker.cli.output import (
    EXIT_CODES_HELP,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    console,
    guard,
    jobs_table,
    print_job,
    print_json,
    progress_bar,
)

BULK_TABLE_MAX = 30  # a bulk submission prints its jobs as a table up to this many


def _read_payloads(file: str) -> tuple[list[dict[str, Any]], bool]:
    """The payload(s) of ``file`` ('-' for stdin) and whether it held a list."""
    name = "stdin" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else open(file, encoding="utf-8").read()  # noqa: SIM115
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(
            EXIT_USAGE,
            f"FILE.json: cannot read {name}: {e}",
            kind="InvalidInput",
            errors={"file": [str(e)]},
        ) from e
    try:
        data = json.loads(text)
    except ValueError as e:
        where = f" at line {e.lineno} column {e.colno}" if hasattr(e, "lineno") else ""
        reason = getattr(e, "msg", str(e))
        raise CliError(
            EXIT_USAGE,
            f"FILE.json: {name} is not valid JSON{where}: {reason}",
            kind="InvalidInput",
            errors={"file": [f"not valid JSON{where}: {reason}"]},
        ) from e
    if isinstance(data, dict):
        return [data], False
    if isinstance(data, list) and data:
        for i, item in enumerate(data):
            if not isinstance(item, dict):
                raise CliError(
                    EXIT_USAGE,
                    f"FILE.json: item [{i}] of {name} is not a JSON object",
                    kind="InvalidInput",
                    errors={f"[{i}]": ["a payload is a JSON object"]},
                )
        return data, True
    raise CliError(
        EXIT_USAGE,
        f"FILE.json: {name} must hold a payload (a JSON object) or a non-empty list of them",
        kind="InvalidInput",
        errors={"file": ["expected a JSON object or a non-empty list of objects"]},
    )


@click.command("submit", epilog=EXIT_CODES_HELP)
@click.argument("operation", metavar="OPERATION")
@click.argument("file", metavar="FILE.json")
@click.option("--exist-ok", is_flag=True, help="An asset that already exists counts as success.")
@click.option(
    "--local/--no-local",
    default=None,
    help="Data samples only: upload the folders (default), or let the node read them "
    "from its own disk.",
)
@click.option(
    "--idempotency-key",
    metavar="K",
    default=None,
    help="Submitting again with the same key returns the existing job (a list gets K:0, K:1, ...).",
)
@click.option("--wait", is_flag=True, help="Wait until the job(s) finished; show progress.")
@click.option(
    "--follow",
    is_flag=True,
    help="Tuples and compute plans: track them on the node and wait until they are "
    "done (implies --wait).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    metavar="S",
    help="With --wait/--follow: give up waiting after S seconds (exit code 4).",
)
@click.option("--target", metavar="PROFILE", default=None, help="Run on this ~/.substra profile.")
@click.option(
    "--producer",
    default="cli",
    show_default=True,
    help="Who submits: idempotency keys and $job: references are scoped to it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the job record(s) as JSON.")
def command(
    operation: str,
    file: str,
    exist_ok: bool,
    local: bool | None,
    idempotency_key: str | None,
    wait: bool,
    follow: bool,
    timeout: float | None,
    target: str | None,
    producer: str,
    as_json: bool,
) -> None:
    """Queue OPERATION (a Client write method) with the payload in FILE.json.

    FILE.json ('-' reads stdin) holds the payload as the queue expects it: the
    `data` dict for add_* operations (add_dataset, add_data_samples,
    add_compute_plan...), the named arguments otherwise (update_compute_plan:
    {"compute_plan_id", "data"}; link_dataset_with_data_samples: {"dataset_key",
    "data_sample_keys"}; download_algo: {"key", "destination_folder"}...). A JSON
    list of payloads submits one job each, with a progress bar. Any key may be
    "$job:<job id>" to use another job's result. Relative paths are taken from
    the current directory.
    """
    with guard(as_json=as_json):
        _submit(
            operation,
            file,
            exist_ok=exist_ok,
            local=local,
            idempotency_key=idempotency_key,
            wait=wait or follow,
            follow=follow,
            timeout=timeout,
            target=target,
            producer=producer,
            as_json=as_json,
        )


def _submit(
    operation: str,
    file: str,
    *,
    exist_ok: bool,
    local: bool | None,
    idempotency_key: str | None,
    wait: bool,
    follow: bool,
    timeout: float | None,
    target: str | None,
    producer: str,
    as_json: bool,
) -> None:
    from substra_worker.cli.connect import load_settings, open_submitter
    from substra_worker.envelope import OPERATIONS, load_envelope
    from substra_worker.sdk.exceptions import InvalidInput

    if operation not in OPERATIONS:
        raise CliError(
            EXIT_USAGE,
            f"operation: unknown operation {operation!r} (one of: {', '.join(sorted(OPERATIONS))})",
            kind="InvalidInput",
            errors={"operation": [f"unknown operation {operation!r}"]},
        )
    if local is not None and not OPERATIONS[operation].local:
        raise CliError(
            EXIT_USAGE,
            f"--local/--no-local: {operation} takes no local option "
            "(only add_data_sample and add_data_samples)",
            kind="InvalidInput",
            errors={"options.local": [f"{operation} takes no local option"]},
        )
    if timeout is not None and not wait:
        raise CliError(
            EXIT_USAGE,
            "--timeout: only with --wait or --follow",
            kind="InvalidInput",
            errors={"timeout": ["only with --wait or --follow"]},
        )
    payloads, bulk = _read_payloads(file)
    envelopes = []
    for i, payload in enumerate(payloads):
        key = idempotency_key
        if key is not None and bulk:
            key = f"{key}:{i}"
        envelopes.append(
            {
                "operation": operation,
                "payload": payload,
                "options": {"exist_ok": exist_ok, "local": True if local is None else local},
                "target": target,
                "idempotency_key": key,
                "follow": follow,
                "producer": producer,
            }
        )

    settings = load_settings()
    # validate everything before queueing anything: bad input changes nothing
    for i, envelope in enumerate(envelopes):
        try:
            load_envelope(dict(envelope), download_root=settings.download_root)
        except InvalidInput as e:
            raise _invalid_item(e, i if bulk else None) from e

    submitter = open_submitter(producer, settings)
    started = time.time()
    jobs = []
    code = EXIT_OK
    try:
        if bulk:
            with progress_bar() as bar:
                task = bar.add_task("submitting", total=len(envelopes))
                for i, envelope in enumerate(envelopes):
                    try:
                        jobs.append(submitter.submit_envelope(envelope))
                    except InvalidInput as e:
                        error = _invalid_item(e, i)
                        error.message += f" ({len(jobs)} of {len(envelopes)} submitted before it)"
                        error.extra["submitted"] = [j.id for j in jobs]
                        raise error from e
                    bar.advance(task)
        else:
            jobs.append(submitter.submit_envelope(envelopes[0]))

        if not wait:
            records = [job.to_dict() for job in jobs]
            if as_json:
                print_json(records if bulk else records[0])
            else:
                _print_submitted(records, bulk, started)
            return

        from substra_worker.cli.waiting import outcome
        from substra_worker.cli.waiting import wait as wait_for

        statuses, timed_out = wait_for(
            submitter, [job.id for job in jobs], follow=follow, timeout=timeout
        )
        records = [job.refresh().to_dict() for job in jobs]
        code = outcome(statuses, records, follow=follow, timed_out=timed_out, timeout=timeout)
        if as_json:
            print_json(records if bulk else records[0])
        elif bulk:
            _print_bulk(records)
        else:
            print_job(records[0])
    finally:
        submitter.close()
    if code != EXIT_OK:
        sys.exit(code)


def _invalid_item(error: Exception, index: int | None) -> CliError:
    errors = getattr(error, "errors", None) or {"_schema": [str(error)]}
    errors = {k: v if isinstance(v, list) else [str(v)] for k, v in errors.items()}
    from substra_worker.cli.output import fields_line

    if index is None:
        return CliError(
            EXIT_USAGE, f"invalid input: {fields_line(errors)}", kind="InvalidInput", errors=errors
        )
    prefixed = {f"[{index}].{k}": v for k, v in errors.items()}
    return CliError(
        EXIT_USAGE,
        f"invalid input: item [{index}]: {fields_line(errors)}",
        kind="InvalidInput",
        errors=prefixed,
    )


def _print_submitted(records: list[dict[str, Any]], bulk: bool, started: float) -> None:
    if not bulk:
        record = records[0]
        existing = " (an existing job: same idempotency key)" if _existing(record, started) else ""
        console.print(
            f"submitted job [bold]{record['id']}[/bold] ({record['operation']}): "
            f"{record['state']}{existing}"
        )
        console.print(f"see it with:  substra-worker job {record['id']}")
        return
    _print_bulk(records)


def _print_bulk(records: list[dict[str, Any]]) -> None:
    counts: dict[str, int] = {}
    for r in records:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    if len(records) <= BULK_TABLE_MAX:
        console.print(jobs_table(records))
    else:
        console.print(f"first job {records[0]['id']}, last job {records[-1]['id']}")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    console.print(f"{len(records)} jobs: {summary}")


def _existing(record: dict[str, Any], started: float) -> bool:
    return bool(record.get("idempotency_key")) and float(record.get("created_at") or 0) < started
