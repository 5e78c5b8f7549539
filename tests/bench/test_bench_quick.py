"""``python -m bench --quick`` completes and writes complete results (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = (
    "bulk_ingest",
    "queue_overhead",
    "watcher_latency",
    "large_upload",
    "compute_overhead",
    "connection_reuse",
)
MACHINE_FIELDS = ("cores", "memory_gib", "python")
RESULT_FIELDS = ("sizes", "settings", "measured", "baseline", "ratios", "targets", "met", "lines")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_run_writes_every_benchmark(tmp_path: Path) -> None:
    # Given: a results file outside the repository (the published results stay untouched)
    out = tmp_path / "quick.json"
    published = ROOT / "bench" / "results" / "latest.json"
    before = published.read_bytes() if published.exists() else None

    # When: the quick size runs, as CI runs it
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out), "--work-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )

    # Then: every benchmark completed and is in the JSON with its numbers and verdicts
    assert done.returncode == 0, done.stderr[-5000:]
    doc = json.loads(out.read_text())
    assert doc["size"] == "quick"
    assert doc["date"]
    for name in MACHINE_FIELDS:
        assert doc["machine"][name], name
    assert set(doc["benchmarks"]) == set(BENCHMARKS)
    for name, result in doc["benchmarks"].items():
        assert result["status"] == "ok", (name, result["error"])
        for field in RESULT_FIELDS:
            assert field in result, (name, field)
        assert result["measured"], name
        assert result["lines"], name
        for target in result["targets"]:
            assert isinstance(target["value"], int | float), (name, target)
            assert isinstance(target["met"], bool), (name, target)
    # the headline targets of the issue are all there, each with its verdict
    targeted = {(n, t["metric"]) for n, r in doc["benchmarks"].items() for t in r["targets"]}
    assert {
        ("bulk_ingest", "submitter_vs_sequential"),
        ("bulk_ingest", "watcher_vs_sequential"),
        ("queue_overhead", "jobs_vs_noop"),
        ("large_upload", "throughput_vs_post"),
        ("large_upload", "client_peak_rss"),
        ("large_upload", "node_peak_rss"),
    } <= targeted
    # and the Markdown table beside it has one row per line, and no benchmark failed
    table = out.with_suffix(".md").read_text()
    assert "| benchmark | ours | baseline | ratio | target | met |" in table
    rows = sum(len(r["lines"]) for r in doc["benchmarks"].values())
    assert table.count("\n| ") == rows + 1
    assert "did not complete" not in table
    assert (published.read_bytes() if published.exists() else None) == before
