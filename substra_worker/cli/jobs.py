"""``substra-worker jobs``: the latest jobs, filtered by state and operation."""

from __future__ import annotations

import click

from substra_worker.cli.output import EXIT_CODES_HELP, console, guard, jobs_table, print_json
from substra_worker.jobs import JobState


def _operations() -> list[str]:
    from substra_worker.envelope import OPERATIONS

    return sorted(OPERATIONS)


@click.command("jobs", epilog=EXIT_CODES_HELP)
@click.option(
    "--state",
    type=click.Choice([s.value for s in JobState]),
    default=None,
    help="Only jobs in this state.",
)
@click.option(
    "--operation",
    type=click.Choice(_operations()),
    default=None,
    metavar="OPERATION",
    help="Only jobs of this operation (add_dataset, add_data_samples, ...).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Show at most this many jobs, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of job records.")
def command(state: str | None, operation: str | None, limit: int, as_json: bool) -> None:
    """List jobs newest first, with the number of jobs in each state.

    The table shows the first 12 characters of each job id; every command
    accepts a unique prefix of 4 or more. --json prints whole records.
    """
    with guard(as_json=as_json):
        from substra_worker.cli.connect import open_submitter

        submitter = open_submitter()
        try:
            records = [job.to_dict() for job in submitter.list_jobs(state, operation, limit=limit)]
            counts = submitter.stats() if not as_json else {}
        finally:
            submitter.close()
        if as_json:
            print_json(records)
            return
        what = " ".join(x for x in (state, operation) if x) or "all"
        if records:
            console.print(jobs_table(records, title=f"jobs ({what}, newest first)"))
        else:
            console.print(f"no jobs ({what})")
        total = sum(counts.values())
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        console.print(f"{total} jobs in the store" + (f": {summary}" if summary else ""))
