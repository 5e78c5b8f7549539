"""``substra-worker watch``: folders dropped into channels of ROOT become data samples."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import click

from substra_worker.settings import get_settings


@click.command("watch")
@click.argument("root", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--polling",
    is_flag=True,
    default=None,
    help="Poll the folders instead of inotify (network filesystems).",
)
@click.option(
    "--archive-to",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Move each folder here (under its channel's name) once registered.",
)
@click.option(
    "--marker",
    default=None,
    metavar="SUFFIX",
    help="A file '<folder><SUFFIX>' next to a folder marks it ready [default: .ready]; "
    "'' disables markers.",
)
@click.option(
    "--quiet-period",
    type=click.FloatRange(min=0),
    default=None,
    metavar="S",
    help="Seconds a folder must stay unchanged to be ready [default: 2].",
)
@click.option(
    "--status",
    "show_status",
    is_flag=True,
    help="Print what happened to each folder and channel of ROOT, then exit.",
)
@click.option("--json", "as_json", is_flag=True, help="With --status: print JSON.")
@click.option(
    "--problems", is_flag=True, help="With --status: only folders refused, stalled or failed."
)
def command(
    root: Path | None,
    polling: bool | None,
    archive_to: Path | None,
    marker: str | None,
    quiet_period: float | None,
    show_status: bool,
    as_json: bool,
    problems: bool,
) -> None:
    """Watch ROOT (default: ./watch_dirs); each folder in a channel becomes a data sample.

    Every first-level folder of ROOT is a channel with a channel.json naming its
    dataset; every folder inside a channel is one data sample, registered once
    it is complete (a '<folder>.ready' marker beside it, or unchanged for the
    quiet period). Runs until SIGINT or SIGTERM.
    """
    from substra_worker.watcher.service import Watcher
    from substra_worker.watcher.state import WatchState
    from substra_worker.watcher.submit import JobGateway

    overrides: dict[str, object] = {}
    if root is not None:
        overrides["watch_root"] = str(root)
    if polling is not None:
        overrides["polling"] = polling
    if marker is not None:
        overrides["marker_name"] = marker
    if quiet_period is not None:
        overrides["quiet_period"] = quiet_period
    settings = get_settings().replace(**overrides)
    root_path = Path(settings.watch_root)
    if marker and ("/" in marker or marker in (".", "..")):
        raise click.BadParameter("a marker is a file name suffix", param_hint="--marker")

    from substra_worker.sdk.exceptions import ConfigurationError

    try:
        gateway = JobGateway.from_settings(settings)
    except ConfigurationError as e:
        raise click.ClickException(str(e)) from e
    state = WatchState(gateway.redis, root_path, prefix=gateway.prefix)
    if show_status:
        _print_status(state, as_json=as_json, problems=problems)
        gateway.close()
        return

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        watcher = Watcher(
            root_path, gateway=gateway, state=state, settings=settings, archive_to=archive_to
        )
    except ValueError as e:
        gateway.close()
        raise click.BadParameter(str(e), param_hint="--archive-to") from e

    def _stop(signum: int, frame: object) -> None:
        watcher.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    watcher.start()
    mode = "polling" if watcher.polling else "inotify"
    click.echo(f"substra-worker watch: watching {watcher.root} ({mode})")
    click.get_text_stream("stdout").flush()
    try:
        watcher.run()
    finally:
        gateway.close()


PROBLEMS = {"rejected", "stalled", "failed", "vanished"}


def _print_status(state, *, as_json: bool, problems: bool) -> None:
    folders = state.folders()
    if problems:
        folders = [f for f in folders if f.status in PROBLEMS]
    channels = state.channels()
    if as_json:
        data = {
            "root": str(state.root),
            "channels": [c.__dict__ for c in channels],
            "folders": [f.__dict__ for f in folders],
        }
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    from substra_worker.watcher.readiness import display_name

    console = Console()
    table = Table(title=f"channels of {state.root}")
    for col in ("channel", "ok", "dataset", "reason"):
        table.add_column(col)
    for c in channels:
        table.add_row(
            display_name(c.name),
            "yes" if c.ok else "no",
            ", ".join(k[:12] for k in c.dataset_keys),
            c.reason or "",
        )
    console.print(table)
    table = Table(title="folders")
    table.add_column("folder", overflow="fold")
    for col in ("status", "sample", "job", "updated"):
        table.add_column(col, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for f in folders:
        table.add_row(
            display_name(f.key),
            f.status,
            (f.sample_key or f.content_hash or "")[:12],
            (f.job_id or "")[:12],
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f.updated_at)),
            f.reason or "",
        )
    console.print(table)
    counts = state.counts()
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no folder yet")
