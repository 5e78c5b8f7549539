"""``substra-worker api``: serve the HTTP API and the dashboard."""

from __future__ import annotations

import logging
import signal

import click

from substra_worker.settings import get_settings


@click.command("api")
@click.option("--host", default=None, help="Listen address [default: settings.api_host].")
@click.option(
    "--port", type=int, default=None, help="Listen port, 0 for a free one [default: 8010]."
)
def command(host: str | None, port: int | None) -> None:
    """Serve the jobs API and the dashboard until SIGINT or SIGTERM.

    Every route but /healthz and the dashboard page needs the API token
    (SUBSTRA_WORKER_API_TOKEN); without one, a token is generated once into
    <state dir>/api-token.
    """
    from substra_worker.api.app import ApiServer
    from substra_worker.api.auth import ensure_token
    from substra_worker.sdk.exceptions import ConfigurationError

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["api_host"] = host
    if port is not None:
        overrides["api_port"] = port
    settings = get_settings().replace(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings, token_file = ensure_token(settings)
        server = ApiServer(settings)
    except ConfigurationError as e:
        raise click.UsageError(str(e)) from e

    def _stop(signum: int, frame: object) -> None:
        server.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    click.echo(f"substra-worker api listening on {server.url}")
    if token_file is not None:
        click.echo(f"API token in {token_file}")
    click.get_text_stream("stdout").flush()
    server.run()
