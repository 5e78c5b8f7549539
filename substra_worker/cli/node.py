"""``substra-worker node``: serve the embedded Substra node over HTTP."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from substra_worker.settings import get_settings


@click.command("node")
@click.option("--host", default=None, help="Listen address [default: settings.node_host].")
@click.option(
    "--port", type=int, default=None, help="Listen port, 0 for a free one [default: 8000]."
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State folder; the node keeps its stores in <state-dir>/node.",
)
@click.option(
    "--user",
    "users",
    multiple=True,
    metavar="NAME:PASSWORD",
    help="A user who may log in (repeatable) [default: SUBSTRA_WORKER_NODE_USERS].",
)
@click.option(
    "--data-root",
    "data_roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder the node may read local=False data samples from (repeatable).",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes serving the port; uploads are CPU-bound [default: 1].",
)
def command(
    host: str | None,
    port: int | None,
    state_dir: Path | None,
    users: tuple[str, ...],
    data_roots: tuple[Path, ...],
    processes: int | None,
) -> None:
    """Serve the embedded Substra node over HTTP until SIGINT or SIGTERM."""
    from substra_worker.node.auth import parse_users

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["node_host"] = host
    if port is not None:
        overrides["node_port"] = port
    if processes is not None:
        overrides["node_processes"] = processes
    if state_dir is not None:
        overrides["state_dir"] = state_dir
    settings = get_settings().replace(**overrides)
    try:
        accounts = parse_users(users or settings.node_users)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--user") from e
    if not accounts:
        raise click.UsageError(
            "no user can log in: pass --user NAME:PASSWORD or set SUBSTRA_WORKER_NODE_USERS"
        )
    roots = data_roots or tuple(Path(root) for root in settings.data_roots)

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s %(message)s",
    )
    if settings.node_processes < 1:
        raise click.BadParameter("must be at least 1", param_hint="SUBSTRA_WORKER_NODE_PROCESSES")
    from substra_worker.node.serve import serve

    def announce(url: str) -> None:
        click.echo(f"substra-worker node listening on {url}")
        click.get_text_stream("stdout").flush()

    try:
        code = serve(settings, accounts, roots, announce=announce)
    except OSError as e:
        raise click.ClickException(
            f"cannot serve on {settings.node_host}:{settings.node_port}: {e}"
        ) from e
    if code:
        raise SystemExit(code)
