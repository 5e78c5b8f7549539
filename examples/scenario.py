"""A whole Substra workflow through the queue, on the embedded defaults.

Registers a dataset, its train and test data samples, an objective and two
algos from ``examples/assets/``, then a compute plan (two rounds of a linear
model and a constant baseline, each tested on the objective's test samples),
all submitted at once through the ``Submitter``: each job refers to the jobs
whose keys it needs (``$job:`` references), so nothing waits in this script.
The plan is followed until it is done on the node, then the leaderboard is
printed with the ``Client``.

Run it while ``substra-worker up`` runs, from the same folder (it finds Redis
the way the CLI does: ``SUBSTRA_WORKER_REDIS_URL``, else the ``runtime.json``
that ``up`` publishes in ``.substra-worker/``)::

    ./dev up                                  # in one terminal
    .venv/bin/python examples/scenario.py     # in another, from the repository root

Running it again registers nothing twice (``exist_ok``) and adds one more
compute plan to the leaderboard. Exit code 0 when the plan is done and the
leaderboard printed; 1 when a job or the plan failed; 3 when Redis is not found.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from substra_worker.jobs import Job, JobError
from substra_worker.settings import Settings
from substra_worker.submitter import Submitter

ASSETS = Path(__file__).resolve().parent / "assets"
PUBLIC = {"public": True, "authorized_ids": []}
METRICS_NAME = "neg_mse"
PRODUCER = "examples"  # the scenario's jobs are listed under this producer
_MTIME = 1_577_836_800  # fixed archive member times: same archive, same key, every run


def archive(folder: Path, dest: Path) -> Path:
    """A reproducible tar.gz of an algo or metrics folder (Dockerfile + script)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(folder.iterdir()):
            if path.name == "description.md" or not path.is_file():
                continue
            data = path.read_bytes()
            info = tarfile.TarInfo(path.name)
            info.size, info.mtime, info.mode = len(data), _MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{folder.name}.tar.gz"
    with out.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        gz.write(buf.getvalue())
    return out


def submit_all(s: Submitter, build: Path) -> dict[str, Job]:
    """Submit every step at once; each job refers to the jobs it needs."""
    samples = ASSETS / "samples"
    train_paths = sorted(str(p) for p in samples.glob("train_*"))
    test_paths = sorted(str(p) for p in samples.glob("test_*"))
    jobs: dict[str, Job] = {}
    jobs["dataset"] = dataset = s.add_dataset(
        {
            "name": "example points",
            "type": "csv",
            "data_opener": str(ASSETS / "opener.py"),
            "description": str(ASSETS / "dataset.md"),
            "permissions": PUBLIC,
        },
        exist_ok=True,
    )
    jobs["train samples"] = train = s.add_data_samples(
        {"paths": train_paths, "data_manager_keys": [dataset], "test_only": False},
        exist_ok=True,
    )
    jobs["test samples"] = test = s.add_data_samples(
        {"paths": test_paths, "data_manager_keys": [dataset], "test_only": True},
        exist_ok=True,
    )
    jobs["objective"] = objective = s.add_objective(
        {
            "name": "fit the line",
            "description": str(ASSETS / "objective.md"),
            "metrics_name": METRICS_NAME,
            "metrics": str(archive(ASSETS / "metrics", build)),
            "test_data_manager_key": dataset,
            "test_data_sample_keys": [test],  # every key of the bulk job
            "permissions": PUBLIC,
        },
        exist_ok=True,
    )
    algos = {}
    for name in ("linear_algo", "constant_algo"):
        jobs[name] = algos[name] = s.add_algo(
            {
                "name": name.removesuffix("_algo"),
                "file": str(archive(ASSETS / name, build)),
                "description": str(ASSETS / name / "description.md"),
                "permissions": PUBLIC,
            },
            exist_ok=True,
        )

    def traintuple(tuple_id: str, algo: Job, keys: list[str], **extra: Any) -> dict:
        return {
            "traintuple_id": tuple_id,
            "algo_key": algo,
            "data_manager_key": dataset,
            "train_data_sample_keys": keys,
            **extra,
        }

    half = [train.ref("keys.0"), train.ref("keys.1")]
    other_half = [train.ref("keys.2"), train.ref("keys.3")]
    jobs["compute plan"] = s.add_compute_plan(
        {
            "traintuples": [
                traintuple("linear-1", algos["linear_algo"], half),
                traintuple(
                    "linear-2", algos["linear_algo"], other_half, in_models_ids=["linear-1"]
                ),
                traintuple("constant", algos["constant_algo"], [train]),
            ],
            "testtuples": [
                {"objective_key": objective, "traintuple_id": t, "tag": t}
                for t in ("linear-1", "linear-2", "constant")
            ],
            "tag": "examples/scenario.py",
            "metadata": {"example": "scenario"},
        },
        follow=True,  # the job keeps polling the plan until it is done on the node
    )
    return jobs


def follow(jobs: dict[str, Job], timeout: float) -> Job:
    """Print each job as it finishes, then the plan's progress until it is done."""
    deadline = time.monotonic() + timeout
    pending = dict(jobs)
    plan = jobs["compute plan"]
    last = None
    while time.monotonic() < deadline:
        for name, job in list(pending.items()):
            job.refresh()
            if job.state.final:
                key = job.key or ", ".join(k[:12] for k in job.keys)
                detail = f"key {key[:64]}" if job.state.value == "succeeded" else job.error
                print(f"  {name:<14} {job.state.value:<9} {detail}")
                del pending[name]
        progress = plan.refresh().progress or {}
        line = f"{progress.get('status')} {progress.get('done', 0)}/{progress.get('total', '?')}"
        if progress and line != last:
            print(f"  compute plan   {line}")
            last = line
        if not pending and (progress.get("final") or plan.state.value != "succeeded"):
            return plan
        time.sleep(0.5)
    raise TimeoutError(f"not finished after {timeout:g}s: {', '.join(pending) or 'the plan'}")


def leaderboard_client(settings: Settings) -> Any:
    """A Client that reads the node the workers write to.

    A ``SUBSTRA_WORKER_PROFILE`` or a node URL with its token; while ``up`` runs
    the embedded node, the settings find its URL and token in the state folder.
    """
    from substra_worker.sdk import Client

    if settings.profile:
        return Client.from_config_file(
            settings.profile, config_path=settings.config_path, tokens_path=settings.tokens_path
        )
    if not settings.node_url:
        raise SystemExit("no node: start `substra-worker up` or set SUBSTRA_WORKER_NODE_URL")
    client = Client(url=settings.node_url, token=settings.node_token)
    if settings.node_username and settings.node_password:
        client.login(settings.node_username, settings.node_password)
    return client


def print_leaderboard(board: dict) -> None:
    objective = board["objective"]
    print(f"\nleaderboard of objective {objective['name']!r} ({objective['key'][:12]}), best first")
    print(f"  {'perf':>10}  {'algo':<10} {'tag':<10} testtuple")
    for entry in board["testtuples"]:
        perf = entry["perf"]
        shown = f"{perf:10.4f}" if perf is not None else f"{'-':>10}"
        print(
            f"  {shown}  {entry['algo']['name']:<10} {entry['tag'] or '':<10} {entry['key'][:12]}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait in all")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    if not settings.redis_url:
        print(
            "no Redis found: start `substra-worker up` in this folder (or ./dev up), "
            "or set SUBSTRA_WORKER_REDIS_URL",
            file=sys.stderr,
        )
        return 3
    build = Path(settings.state_dir) / "examples"
    with Submitter(settings, producer=PRODUCER) as submitter:
        jobs = submit_all(submitter, build)
        print(f"submitted {len(jobs)} jobs (substra-worker jobs lists them):")
        try:
            plan = follow(jobs, args.timeout)
        except TimeoutError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        failed = [name for name, job in jobs.items() if job.state.value != "succeeded"]
        if failed:
            print(f"error: {', '.join(failed)} did not succeed", file=sys.stderr)
            return 1
        status = (plan.progress or {}).get("status")
        if status != "done":
            print(f"error: the compute plan ended {status}", file=sys.stderr)
            return 1
        objective_key = jobs["objective"].key
    with leaderboard_client(settings) as client:
        print_leaderboard(client.leaderboard(objective_key))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
