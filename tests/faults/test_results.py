"""The results file: rows merged by name, and the Markdown table rendered from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.faults.results import record_bad_input, record_scenario, record_security

TABLE = Path(__file__).resolve().parents[2] / "bench" / "reliability_table.py"


def row(name: str, **extra) -> dict:
    return {
        "scenario": name,
        "title": f"title of {name}",
        "submitted": 250,
        "succeeded": 248,
        "failed": 2,
        "lost": 0,
        "duplicated": 0,
        **extra,
    }


def test_rows_merge_by_name_and_render_as_markdown(tmp_path):
    path = tmp_path / "reliability.json"
    record_scenario(row("node-down"), path)
    record_scenario(row("worker-killed", succeeded=1), path)
    record_scenario(row("worker-killed"), path)  # a rerun replaces its row
    record_scenario(row("watcher-killed", unit="folders", recovered_by_sweep=1), path)
    record_bad_input("archives: sample", 21, 21, path)
    record_security("Node refuses bad tokens", "pass", "50 routes", path)
    record_security("A gap", "gap", "", path)
    record_security("Rules", "pass", "+client|setname", path)
    data = json.loads(path.read_text())
    assert list(data["scenarios"]) == ["node-down", "worker-killed", "watcher-killed"]
    assert data["scenarios"]["worker-killed"]["succeeded"] == 248

    result = subprocess.run(
        [sys.executable, str(TABLE), str(path)], capture_output=True, text=True, check=True
    )
    lines = result.stdout.splitlines()
    table = [line for line in lines if line.startswith("| title of")]
    # in the order, whatever the order of the runs
    assert [line.split(" | ")[0] for line in table] == [
        "| title of worker-killed",
        "| title of node-down",
        "| title of watcher-killed",
    ]
    assert "| title of watcher-killed | 250 folders | 248 | 2 | 0 | 0 |" in lines
    assert "| archives: sample | 21 | 21 |" in lines
    assert "| A gap | **known gap** |  |" in lines
    assert "| Rules | pass | +client\\|setname |" in lines  # a pipe does not end the cell
    assert any("recovery sweep" in line for line in lines)


def test_the_table_script_says_when_there_are_no_results(tmp_path):
    result = subprocess.run(
        [sys.executable, str(TABLE), str(tmp_path / "none.json")], capture_output=True, text=True
    )
    assert result.returncode == 1 and "run the tests first" in result.stderr
