"""``substra-worker worker``: run a Celery worker that executes queued jobs."""

from __future__ import annotations

import click

from substra_worker.settings import get_settings


@click.command("worker")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs run at once [default: settings.worker_concurrency].",
)
@click.option(
    "-l",
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
)
@click.option(
    "-P",
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
    help="How jobs run: child processes, threads, or one at a time in this process.",
)
@click.option("-n", "--hostname", default=None, help="Worker name [default: celery@<host>].")
def command(concurrency: int | None, loglevel: str, pool: str, hostname: str | None) -> None:
    """Run a worker: take jobs from Redis, call the node, record the outcomes.

    The node is this worker's own (SUBSTRA_WORKER_NODE_URL + SUBSTRA_WORKER_NODE_TOKEN,
    or SUBSTRA_WORKER_PROFILE); jobs never carry a token. Stop with SIGTERM or
    Ctrl-C: running jobs finish (a second signal stops at once, and their
    messages are delivered again).
    """
    settings = get_settings()
    if not settings.redis_url:
        raise click.ClickException(
            "no Redis configured: set SUBSTRA_WORKER_REDIS_URL (or use `substra-worker up`)"
        )
    from substra_worker.tasks.app import QUEUE, app

    argv = [
        "worker",
        f"--loglevel={loglevel.upper()}",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        f"--pool={pool}",
        f"--queues={QUEUE}",
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)
