"""``substra-worker purge``: delete finished job records, after saying which."""

from __future__ import annotations

import re
import sys
import time

import click
from rich.table import Table

from substra_worker.cli.output import (
    EXIT_CODES_HELP,
    EXIT_JOB,
    EXIT_USAGE,
    CliError,
    console,
    guard,
    print_json,
)

PURGEABLE = ("succeeded", "failed", "canceled")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``90``, ``90s``, ``15m``, ``12h`` or ``7d``."""
    match = _DURATION.match(text)
    if match is None:
        raise CliError(
            EXIT_USAGE,
            f"--older-than: {text!r} is not a duration (90, 90s, 15m, 12h, 7d)",
            kind="InvalidInput",
            errors={"older_than": ["not a duration"]},
        )
    return float(match[1]) * _UNITS[match[2]]


def count_purgeable(store, states: list[str], older_than: float) -> dict[str, int]:
    """Records per state that ``purge`` would delete right now."""
    store.stats()  # drops index entries of records that already expired
    ceiling = time.time() - older_than
    return {s: int(store.redis.zcount(f"{store.prefix}state:{s}", "-inf", ceiling)) for s in states}


@click.command("purge", epilog=EXIT_CODES_HELP)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(PURGEABLE),
    help="Only jobs in this state (repeatable) [default: succeeded, failed and canceled].",
)
@click.option(
    "--older-than",
    default="0",
    metavar="DURATION",
    help="Only jobs finished at least this long ago: 90s, 15m, 12h, 7d [default: any].",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print what was (or would be) deleted as JSON."
)
def command(
    states: tuple[str, ...], older_than: str, yes: bool, dry_run: bool, as_json: bool
) -> None:
    """Delete the records of finished jobs: their results, errors, attempts and history.

    Shows how many records of each state would go, then asks (--yes to skip; a
    script without a terminal must pass --yes or --dry-run). Queued, waiting,
    running and retrying jobs are never purged; a purged failed job can no
    longer be retried; assets on the node are not touched. Succeeded and
    canceled records also expire on their own after SUBSTRA_WORKER_RESULT_TTL.
    Declining the prompt deletes nothing and exits 1.
    """
    with guard(as_json=as_json):
        chosen = list(dict.fromkeys(states)) or list(PURGEABLE)
        seconds = parse_duration(older_than)
        from substra_worker.cli.connect import open_submitter

        submitter = open_submitter()
        try:
            shown_at = time.time()
            counts = count_purgeable(submitter.store, chosen, seconds)
            total = sum(counts.values())
            report = {"states": chosen, "older_than": seconds, "counts": counts, "total": total}
            if as_json and (dry_run or total == 0):
                print_json({**report, "deleted": 0, "dry_run": dry_run})
                return
            if not as_json:
                _show_plan(counts, seconds)
            if total == 0 or dry_run:
                if not as_json:
                    console.print("nothing deleted" + (" (dry run)" if dry_run else ""))
                return
            if not yes:
                if as_json or not sys.stdin.isatty():
                    raise CliError(
                        EXIT_USAGE,
                        f"purge would delete {total} job record(s): pass --yes to confirm "
                        "(nothing was deleted)",
                        kind="ConfirmationNeeded",
                        extra={"counts": counts},
                    )
                if not click.confirm(f"Delete these {total} job record(s)?", default=False):
                    console.print("nothing deleted")
                    sys.exit(EXIT_JOB)
            # only what was shown: records that finished since then stay
            deleted = submitter.purge(chosen, seconds + (time.time() - shown_at))
        finally:
            submitter.close()
        if as_json:
            print_json({**report, "deleted": deleted, "dry_run": False})
        else:
            console.print(f"deleted {deleted} job record(s)")


def _show_plan(counts: dict[str, int], older_than: float) -> None:
    age = f" finished more than {older_than:g}s ago" if older_than else ""
    table = Table(title=f"job records to delete{age}")
    table.add_column("state")
    table.add_column("records", justify="right")
    for state, n in counts.items():
        table.add_row(state, str(n))
    console.print(table)
    if counts.get("failed"):
        console.print("Deleted failed jobs can no longer be retried.")
    console.print("Active jobs are never purged; assets on the node are not touched.")
