"""The ``substra-worker`` command line.

Subcommands live in their own modules (``cli/<name>.py``, each exposing a click
``command``) and are imported only when used, so ``substra-worker node`` does
not pay for Celery and ``worker`` does not pay for the node.
"""

from __future__ import annotations

import importlib

import click

# command name -> module under substra_worker.cli
COMMANDS: dict[str, str] = {
    "api": "api",
    "cancel": "cancel",
    "job": "job",
    "jobs": "jobs",
    "node": "node",
    "purge": "purge",
    "retry": "retry",
    "submit": "submit",
    "up": "up",
    "watch": "watch",
    "worker": "worker",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        return importlib.import_module(f"substra_worker.cli.{module}").command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="substra-worker")
def main() -> None:
    """Feed a Substra node reliably, in the background."""
