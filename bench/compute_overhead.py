"""Node compute overhead: a compute plan on the embedded node, against the same steps run by hand.

Ours: a compute plan of N chained traintuples (each trains on the previous
model) with the trivial substratools algo of ``bench/assets``, submitted with
``Client.add_compute_plan`` and timed until the plan is ``done``.
Baseline: the same N ``algo.py train`` commands, same interpreter, same
arguments shape, run one after the other with ``subprocess.run`` on a folder
laid out the same way (data, models, opener). The difference is what the node
adds per tuple: claiming it, building its sandbox, installing the algo and the
inputs, watching the step, storing the model, unblocking the next tuple.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time

from bench.data import ALGO as ALGO_SCRIPT
from bench.data import DESCRIPTION, algo_archive, register_dataset, write_sample
from bench.measure import BenchError, rate, ratio, wait_until
from bench.report import Line, Result
from bench.runner import Context
from bench.stack import Node

NAME = "compute_overhead"
TITLE = "Node compute overhead"
SIZES = {"quick": {"tuples": 10}, "full": {"tuples": 100}}
TIMEOUT = 1800.0  # seconds for the plan to finish
POLL = 0.05  # seconds between two reads of the plan's status


def run(ctx: Context) -> Result:
    n = ctx.sizes["tuples"]
    node = ctx.started(Node(ctx.work / "node"))
    sample = write_sample(ctx.work / "sample", "compute")
    with node.client() as client:
        dataset = register_dataset(client, ctx.work, "compute")
        sample_key = client.add_data_sample(
            {"path": str(sample), "data_manager_keys": [dataset], "test_only": False}
        )["pkhash"]
        algo = client.add_algo(
            {
                "name": "bench mean",
                "file": str(algo_archive(ctx.work / "algo.tar.gz")),
                "description": str(DESCRIPTION),
                "permissions": {"public": True, "authorized_ids": []},
            }
        )["key"]
        ctx.log(f"compute plan of {n} chained traintuples")
        plan = {
            "traintuples": [
                {
                    "traintuple_id": f"t{i}",
                    "algo_key": algo,
                    "data_manager_key": dataset,
                    "train_data_sample_keys": [sample_key],
                    "in_models_ids": [f"t{i - 1}"] if i else [],
                }
                for i in range(n)
            ],
            "tag": "bench",
        }
        started = time.perf_counter()
        plan_id = client.add_compute_plan(plan)["computePlanID"]
        final = wait_until(
            lambda: _finished(client, plan_id), TIMEOUT, interval=POLL, what="the compute plan"
        )
        node_seconds = time.perf_counter() - started
        if final["status"] != "done":
            raise BenchError(f"the compute plan ended {final['status']}")
        last = client.get_traintuple(final["IDToKey"][f"t{n - 1}"])
    ctx.log(f"{n} direct `algo.py train` runs")
    direct_seconds, direct_hash = _direct(ctx, sample, n)
    ours = {
        "seconds": round(node_seconds, 3),
        "tuples_per_s": round(rate(n, node_seconds), 2),
        "final_model": last["outModel"]["hash"],
    }
    baseline = {
        "seconds": round(direct_seconds, 3),
        "tuples_per_s": round(rate(n, direct_seconds), 2),
        "final_model": direct_hash,
    }
    overhead_ms = (node_seconds - direct_seconds) / n * 1000
    return Result(
        NAME,
        TITLE,
        ctx.sizes,
        settings={"node_concurrency": 2, "plan": "a chain: each traintuple trains on the last"},
        measured={"compute_plan": ours, "overhead_ms_per_tuple": round(overhead_ms, 1)},
        baseline={"direct_subprocess_loop": baseline},
        lines=[
            Line(
                "plan_vs_direct",
                f"Compute plan of {n} chained traintuples, trivial substratools algo",
                f"{ours['tuples_per_s']:.2f} tuples/s ({overhead_ms:+.0f} ms per tuple)",
                f"same `algo.py train` commands in a loop: {baseline['tuples_per_s']:.2f}/s",
                ratio(ours["tuples_per_s"], baseline["tuples_per_s"]),
            )
        ],
        notes=[
            "the node's final model is "
            + ("identical to" if ours["final_model"] == direct_hash else "DIFFERENT from")
            + " the one of the direct loop"
        ],
    )


def _finished(client, plan_id: str) -> dict | None:
    plan = client.get_compute_plan(plan_id)
    return plan if plan["status"] in ("done", "failed", "canceled") else None


def _direct(ctx: Context, sample, n: int) -> tuple[float, str]:
    """Run the N train steps by hand; return the seconds and the final model's sha256."""
    base = ctx.folder("direct")
    work = ctx.folder("direct", "work")
    shutil.copy(ALGO_SCRIPT, work / "algo.py")
    data = ctx.folder("direct", "data")
    (data / "sample").symlink_to(sample.resolve(), target_is_directory=True)
    models = ctx.folder("direct", "models")
    logs = ctx.folder("direct", "logs")
    opener = base / "opener.py"
    shutil.copy(ctx.work / "opener-compute.py", opener)  # the dataset's opener (register_dataset)
    started = time.perf_counter()
    for i in range(n):
        command = [sys.executable, "algo.py", "train", *([f"model-{i - 1}"] if i else [])]
        command += ["--rank", str(i), "--data-samples-path", str(data)]
        command += ["--models-path", str(models), "--output-model-path", str(models / f"model-{i}")]
        command += ["--opener-path", str(opener), "--log-path", str(logs / f"train-{i}.log")]
        done = subprocess.run(command, cwd=work, capture_output=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"direct step {i} failed: {done.stderr.decode()[-1000:]}")
    seconds = time.perf_counter() - started
    return seconds, hashlib.sha256((models / f"model-{n - 1}").read_bytes()).hexdigest()
