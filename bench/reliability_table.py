"""Render ``bench/results/reliability.json`` as the README's Reliability section (Markdown).

The fault scenarios (``tests/faults``), the bad-input tests (``tests/badinput``) and
the security tests (``tests/security``) write that file as they pass; run them, then::

    python bench/reliability_table.py            # print the Markdown
    python bench/reliability_table.py -o FILE    # write it to FILE
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "reliability.json"

# the order of the scenarios in the issue; others follow, by name
SCENARIO_ORDER = (
    "worker-killed",
    "redis-restart",
    "node-down",
    "proxy-503",
    "proxy-408",
    "proxy-500",
    "proxy-slow",
    "watcher-killed",
    "up-sigterm",
)
STATUS = {"pass": "pass", "gap": "**known gap**", "info": "note"}


def _table(header: list[str], rows: list[list[Any]], align: str = "") -> list[str]:
    align = align or "l" * len(header)
    marks = [":--" if a == "l" else "--:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _cell(value: Any) -> str:
    """A table cell: a ``|`` inside it would end the cell."""
    return str(value).replace("|", "\\|")


def _ordered(scenarios: dict[str, dict]) -> list[dict]:
    rank = {name: i for i, name in enumerate(SCENARIO_ORDER)}
    return sorted(scenarios.values(), key=lambda r: (rank.get(r["scenario"], 99), r["scenario"]))


def render(data: dict[str, Any]) -> str:
    out = ["## Reliability", ""]
    scenarios = data.get("scenarios") or {}
    if scenarios:
        out += [
            "Each fault scenario runs a bulk workload through a real Redis, real Celery "
            "workers and the embedded node (`tests/faults`), injects the fault, then checks "
            "every job and every asset on the node (by key; compute plans by their "
            "`substra_worker_job` stamp).",
            "",
        ]
        rows = []
        for r in _ordered(scenarios):
            unit = r.get("unit", "jobs")
            submitted = f"{r['submitted']} {unit}" if unit != "jobs" else r["submitted"]
            rows.append(
                [
                    r.get("title", r["scenario"]),
                    submitted,
                    r["succeeded"],
                    r["failed"],
                    r["lost"],
                    r["duplicated"],
                ]
            )
        out += _table(
            ["Fault", "Submitted", "Succeeded", "Failed", "Lost", "Duplicated"], rows, "lrrrrr"
        )
        out += [
            "",
            "Failed jobs are the workload's deliberately invalid ones (a traintuple naming an "
            "algo the node does not have), each recorded with the node's reason; every other "
            "job succeeded. Lost: a job never final, or succeeded without its asset on the "
            "node. Duplicated: an asset more than once on the node.",
        ]
        swept = [r for r in scenarios.values() if r.get("recovered_by_sweep")]
        if swept:
            names = ", ".join(r["scenario"] for r in swept)
            out += [
                "",
                f"In {names}, jobs left without a message were sent again by the recovery "
                "sweep (which workers run every few minutes; the test ran it at once).",
            ]
    checks = data.get("reliability_checks") or {}
    if checks:
        out += ["", "### Other reliability checks", ""]
        rows = [[c["check"], STATUS.get(c["status"], c["status"]), c.get("detail", "")]
                for c in checks.values()]  # fmt: skip
        out += _table(["Check", "Result", "Detail"], rows)
    bad = data.get("bad_input") or {}
    if bad:
        out += ["", "### Bad input", ""]
        rows = [[b["category"], b["tried"], b["refused"]] for b in bad.values()]
        out += _table(["Category", "Tried", "Refused"], rows, "lrr")
        out += [
            "",
            "Refused: a clear error naming the field at submit (nothing recorded or queued), "
            "or a 4xx with a JSON message from the node, which keeps answering. Where Refused "
            "is below Tried, the difference is a known gap (a test marked xfail).",
        ]
    security = data.get("security") or {}
    if security:
        out += ["", "### Security checks", ""]
        rows = [[c["check"], STATUS.get(c["status"], c["status"]), c.get("detail", "")]
                for c in security.values()]  # fmt: skip
        out += _table(["Check", "Result", "Detail"], rows)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS)
    parser.add_argument("-o", "--output", type=Path, help="write the Markdown here")
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.results.read_text())
    except FileNotFoundError:
        print(f"no results at {args.results}: run the tests first", file=sys.stderr)
        return 1
    text = render(data)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
