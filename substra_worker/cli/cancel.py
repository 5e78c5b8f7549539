"""``substra-worker cancel ID``: cancel a job that has not started."""

from __future__ import annotations

import click

from substra_worker.cli.output import EXIT_CODES_HELP, console, guard, print_json


@click.command("cancel", epilog=EXIT_CODES_HELP)
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
def command(job_id: str, as_json: bool) -> None:
    """Cancel job ID if it is queued or waiting; the jobs waiting on it fail.

    A running or finished job cannot be canceled (exit code 1). To stop a compute
    plan on the node, submit cancel_compute_plan instead.
    """
    with guard(as_json=as_json):
        from substra_worker.cli.connect import open_submitter, resolve_job_id

        submitter = open_submitter()
        try:
            record = submitter.cancel(resolve_job_id(submitter, job_id)).to_dict()
        finally:
            submitter.close()
        if as_json:
            print_json(record)
        else:
            console.print(
                f"job [bold]{record['id']}[/bold] ({record['operation']}): {record['state']}"
            )
