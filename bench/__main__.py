"""``python -m bench``: run the benchmarks, write the results as JSON and as a Markdown table.

    python -m bench                 # full size; writes bench/results/latest.{json,md}
    python -m bench --quick         # CI size; writes bench/results/quick.{json,md}
    python -m bench --only bulk_ingest --only large_upload

A run with ``--only`` writes bench/results/partial.{json,md} unless ``--out``
says otherwise, so that the published full results (latest.json, latest.md, and
the table between the results marks of bench/README.md and of the project's
README.md, where it has them) are only ever replaced by a full run. Exits 1
when a benchmark could not complete (a missed target is reported, not an error).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench import report
from bench.runner import NAMES, run_one

RESULTS = Path(__file__).resolve().parent / "results"
# files showing the latest full results, between report.START_MARK and report.END_MARK
READMES = (
    Path(__file__).resolve().parent / "README.md",
    Path(__file__).resolve().parents[1] / "README.md",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small CI size")
    parser.add_argument(
        "--only",
        action="append",
        choices=NAMES,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(NAMES)}",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON results file (the .md goes beside it)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="scratch folder (default: a temporary one); the large upload needs about "
        "5x its sample size free there",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    return parser.parse_args(argv)


def default_out(quick: bool, only: list[str] | None) -> Path:
    if only:
        return RESULTS / "partial.json"
    return RESULTS / ("quick.json" if quick else "latest.json")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = "quick" if args.quick else "full"
    names = [n for n in NAMES if not args.only or n in args.only]
    out = args.out or default_out(args.quick, args.only)
    published = RESULTS / "latest.json"
    if (args.quick or args.only) and out.resolve() == published.resolve():
        print(
            f"{published} holds the full results of every benchmark: not overwritten "
            "by a --quick or --only run",
            file=sys.stderr,
        )
        return 2
    started = dt.datetime.now(dt.UTC).astimezone()
    load_before = [round(v, 2) for v in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="substra-worker-bench-", dir=args.work_dir))
    try:
        results = [run_one(name, size, work, keep=args.keep) for name in names]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    doc = report.document(results, size=size, started=started, load_before=load_before)
    report.write(doc, out, out.with_suffix(".md"))
    if out.resolve() == (RESULTS / "latest.json").resolve():
        for readme in READMES:
            report.update_readme(readme, report.markdown(doc))
    print(report.markdown(doc))
    print(f"results: {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
