"""``substra-worker job ID``: one job's record, attempts and history; optionally wait for it."""

from __future__ import annotations

import sys

import click

from substra_worker.cli.output import EXIT_CODES_HELP, EXIT_OK, guard, print_job, print_json


@click.command("job", epilog=EXIT_CODES_HELP)
@click.argument("job_id", metavar="ID")
@click.option("--wait", is_flag=True, help="Wait until the job finished; show progress.")
@click.option(
    "--follow",
    is_flag=True,
    help="For a job submitted with follow: wait until its tuple or plan is done on the node.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    metavar="S",
    help="With --wait/--follow: give up after S seconds (exit code 4).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
def command(job_id: str, wait: bool, follow: bool, timeout: float | None, as_json: bool) -> None:
    """Show job ID: state, key(s), error, progress, attempts and history.

    ID is the job's id, "$job:<id>", or a unique prefix of 4 or more characters.
    With --wait or --follow the exit code tells how the job ended.
    """
    code = EXIT_OK
    with guard(as_json=as_json):
        from substra_worker.cli.connect import open_submitter, resolve_job_id

        submitter = open_submitter()
        try:
            job = submitter.get_job(resolve_job_id(submitter, job_id))
            if wait or follow:
                from substra_worker.cli.waiting import outcome
                from substra_worker.cli.waiting import wait as wait_for

                statuses, timed_out = wait_for(submitter, [job.id], follow=follow, timeout=timeout)
                job.refresh()
                code = outcome(
                    statuses, [job.to_dict()], follow=follow, timed_out=timed_out, timeout=timeout
                )
            record = job.to_dict()
        finally:
            submitter.close()
        if as_json:
            print_json(record)
        else:
            print_job(record)
    if code != EXIT_OK:
        sys.exit(code)
