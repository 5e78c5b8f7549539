"""Large upload: one big data sample through the Client, against a plain streamed POST.

Ours: ``Client.add_data_sample({"path": folder}, local=True)``: the client zips the
folder to a temporary file, streams it, and returns once the node answered.
Baseline: the same bytes, already zipped (built beforehand with the client's own
zip writer, so the node receives the same archive), POSTed by requests with a
streaming multipart encoder reading the file object: nothing but the transfer.

Each side runs in a process of its own (``python -m bench.upload_process``), which
reports its own peak RSS, against a node of its own (fresh state), whose peak
RSS is read from ``/proc/<pid>/status`` (``VmHWM``) after the upload. Throughput
counts the sample's size over the whole call, archiving included for the client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.data import big_sample, register_dataset
from bench.measure import MIB, BenchError, rate, ratio
from bench.report import Line, Result, Target
from bench.runner import Context
from bench.stack import Node, child_env

NAME = "large_upload"
TITLE = "Large upload"
SIZES = {"quick": {"sample_mib": 64, "files": 4}, "full": {"sample_mib": 1024, "files": 4}}
THROUGHPUT_TARGET = Target(">=", 0.8)
MEMORY_TARGET = Target("<", 150.0, "MB")
TIMEOUT = 1800.0  # seconds for one upload process


def run(ctx: Context) -> Result:
    size_mib = ctx.sizes["sample_mib"]
    folder = big_sample(ctx.work / "sample", size_mib, ctx.sizes["files"])
    archive = ctx.work / "sample.zip"
    from substra_worker.sdk.archive import write_zip

    write_zip(folder, archive)
    sample_bytes = sum(f.stat().st_size for f in folder.iterdir())
    ctx.log(f"plain streamed POST of a {size_mib} MiB zip")
    baseline = _variant(ctx, "post", archive, sample_bytes)
    ctx.log(f"Client.add_data_sample of a {size_mib} MiB folder")
    ours = _variant(ctx, "client", folder, sample_bytes)
    if ours["key"] != baseline["key"]:
        raise BenchError(f"the two uploads gave different keys: {ours['key']}, {baseline['key']}")
    label = f"{size_mib} MiB" if size_mib < 1024 else f"{size_mib / 1024:g} GiB"
    return Result(
        NAME,
        TITLE,
        {**ctx.sizes, "archive_bytes": archive.stat().st_size},
        settings={"archive": "zip, stored (no compression)", "transport": "requests-toolbelt"},
        measured={"client": ours},
        baseline={"streamed_post": baseline},
        lines=[
            Line(
                "throughput_vs_post",
                f"Upload of one {label} sample: `Client.add_data_sample` (zips, then streams)",
                f"{ours['mib_per_s']:.0f} MiB/s",
                f"streamed POST of the ready zip: {baseline['mib_per_s']:.0f} MiB/s",
                ratio(ours["mib_per_s"], baseline["mib_per_s"]),
                THROUGHPUT_TARGET,
            ),
            Line(
                "client_peak_rss",
                f"Peak RSS of the uploading process ({label})",
                f"{ours['client_peak_rss_mb']:.0f} MB",
                f"streamed POST process: {baseline['client_peak_rss_mb']:.0f} MB",
                target=MEMORY_TARGET,
                value=ours["client_peak_rss_mb"],
            ),
            Line(
                "node_peak_rss",
                f"Peak RSS of the node receiving it ({label})",
                f"{ours['node_peak_rss_mb']:.0f} MB",
                f"node under the streamed POST: {baseline['node_peak_rss_mb']:.0f} MB",
                target=MEMORY_TARGET,
                value=max(ours["node_peak_rss_mb"], baseline["node_peak_rss_mb"]),
            ),
        ],
        notes=[
            f"the client spent {ours['seconds'] - ours['transfer_seconds']:.1f}s of its "
            f"{ours['seconds']:.1f}s zipping the folder to a temporary file"
            if ours.get("transfer_seconds") is not None
            else "the client's time includes zipping the folder"
        ],
    )


def _variant(ctx: Context, mode: str, path: Path, sample_bytes: int) -> dict:
    node = ctx.started(Node(ctx.work / f"node-{mode}"))
    with node.client() as client:
        dataset = register_dataset(client, ctx.work, mode)
    node_before = node.rss_mb()
    tmp = ctx.folder(f"tmp-{mode}")  # the client's temporary zip goes here
    os.sync()  # start from clean page cache writeback, the same for both sides
    command = [sys.executable, "-m", "bench.upload_process", mode, node.url, dataset, str(path)]
    env = child_env({"node_token": node.token})
    env["TMPDIR"] = str(tmp)
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"{mode} upload failed: {done.stderr[-2000:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    answer["node_peak_rss_mb"] = node.peak_rss_mb()
    answer["node_rss_before_mb"] = node_before
    answer["mib_per_s"] = round(rate(sample_bytes / MIB, answer["seconds"]), 1)
    node.stop()
    return answer
