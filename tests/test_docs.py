"""The README stays true to the code: every setting and every CLI command is documented."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from substra_worker.cli import COMMANDS
from substra_worker.settings import PREFIX, Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table():
    missing = [
        PREFIX + f.name.upper()
        for f in dataclasses.fields(Settings)
        if f"`{PREFIX + f.name.upper()}`" not in README
    ]
    assert not missing, f"settings missing from README.md: {missing}"


def test_every_cli_command_is_in_the_readme():
    missing = [name for name in COMMANDS if f"`substra-worker {name}" not in README]
    assert not missing, f"commands missing from README.md: {missing}"


def test_quick_start_gives_the_two_commands():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "./dev up" in quick and "./dev test" in quick
