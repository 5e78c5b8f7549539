"""``substra-worker retry ID``: queue a failed job again."""

from __future__ import annotations

import click

from substra_worker.cli.output import EXIT_CODES_HELP, console, guard, print_json


@click.command("retry", epilog=EXIT_CODES_HELP)
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
def command(job_id: str, as_json: bool) -> None:
    """Queue failed job ID again (its references are checked first).

    Only failed jobs are retried (exit code 1 otherwise). Jobs that were
    waiting on it and failed with it are retried separately.
    """
    with guard(as_json=as_json):
        from substra_worker.cli.connect import open_submitter, resolve_job_id

        submitter = open_submitter()
        try:
            record = submitter.retry(resolve_job_id(submitter, job_id)).to_dict()
        finally:
            submitter.close()
        if as_json:
            print_json(record)
        else:
            console.print(
                f"job [bold]{record['id']}[/bold] ({record['operation']}): {record['state']}"
            )
