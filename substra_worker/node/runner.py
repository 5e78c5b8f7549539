"""Running one claimed tuple: build its sandbox, run its steps, collect its outputs.

Sandbox layout (``sandboxes/<tuple key>/``, removed afterwards):

- ``work/``: the algo archive's files, the working directory of the algo step (as the
  ``/sandbox`` folder of a Substra container); ``metrics_work/`` likewise for metrics;
- ``in/data/<sample key>`` (links to the sample folders), ``in/models/<hash>`` (copies
  of the input models), ``in/opener/opener.py``;
- ``out/model/model``, ``out/models/{head,trunk}``, ``out/pred/pred``, ``out/perf/perf.json``,
  ``out/logs/``.

Output models go to the file store; their sha256 is their hash. Steps are run by
``node.executor`` with the node's interpreter and step time limit.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from substra_worker.node import executor, registry
from substra_worker.node.context import Context
from substra_worker.node.errors import NodeError
from substra_worker.node.shapes import ALGO_OF_TUPLE, model_role
from substra_worker.node.store import loads

LOG_TAIL = 10 * 1024  # characters of step output kept in a tuple's log


class SetupError(Exception):
    """Raised when a tuple's inputs cannot be assembled (a deleted model, a missing folder)."""


@dataclass
class Outcome:
    """What running a tuple gave: outputs on success, a reason and a log tail otherwise."""

    ok: bool
    log: str
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


def _tail(text: str) -> str:
    return text[-LOG_TAIL:]


def _dockerfile_dir(root: Path) -> Path:
    if (root / "Dockerfile").is_file():
        return root
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return root


class _Run:
    """One tuple's run, with its sandbox and the cancel check."""

    def __init__(self, ctx: Context, row, should_cancel: Callable[[], bool]):
        self.ctx = ctx
        self.row = row
        self.body = loads(row["body"])
        self.should_cancel = should_cancel
        self.sandbox = ctx.sandboxes_dir / row["key"]
        self.logs: list[str] = []

    # --- inputs ---------------------------------------------------------------------

    def install(self, archive_key: str, name: str) -> tuple[Path, Path]:
        """Copy an extracted archive into the sandbox; return (working dir, script)."""
        try:
            source = registry.extracted(self.ctx, archive_key, name)
        except NodeError as e:
            raise SetupError(f"archive {archive_key}: {e.message}") from e
        dest = self.sandbox / name
        shutil.copytree(source, dest)
        try:
            script = executor.entrypoint_script(dest)
        except ValueError as e:
            raise SetupError(str(e)) from e
        return _dockerfile_dir(dest), dest / script

    def data(self, sample_keys: list[str]) -> Path:
        folders = {}
        for key in sample_keys:
            try:
                folder = registry.sample_folder(self.ctx, key)
            except NodeError as e:
                raise SetupError(e.message) from e
            if not folder.is_dir():
                raise SetupError(f"the folder of data sample {key} is missing: {folder}")
            folders[key] = folder
        return executor.prepare_data_samples_dir(self.sandbox / "in", folders, name="data")

    def opener(self, data_manager_key: str) -> Path:
        source = self.ctx.files.path(data_manager_key)
        if not source.is_file():
            raise SetupError(f"the opener of dataset {data_manager_key} is missing")
        target = self.sandbox / "in" / "opener" / "opener.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return target

    def model_hash(self, parent_key: str, role: str) -> str:
        row = self.ctx.store.conn.execute(
            "SELECT hash, deleted FROM models WHERE tuple_key = ? AND role = ?", (parent_key, role)
        ).fetchone()
        if row is None:
            raise SetupError(f"tuple {parent_key} has no {role} model")
        if row["deleted"] or not self.ctx.files.exists(row["hash"]):
            raise SetupError(f"the {role} model of tuple {parent_key} was deleted")
        return row["hash"]

    def parent_kind(self, key: str) -> str:
        row = self.ctx.store.conn.execute(
            "SELECT kind FROM tuples WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            raise SetupError(f"parent tuple {key} does not exist")
        return row["kind"]

    def models(self, hashes: list[str]) -> Path:
        paths = {h: self.ctx.files.path(h) for h in hashes}
        return executor.prepare_models_dir(self.sandbox / "in", paths, name="models")

    def out(self, *parts: str) -> Path:
        path = self.sandbox.joinpath("out", *parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # --- steps ----------------------------------------------------------------------

    def step(self, argv: list[str], cwd: Path, script: Path) -> executor.StepResult:
        result = executor.run_step(
            argv,
            script=script,
            cwd=cwd,
            python=self.ctx.python,
            timeout=self.ctx.step_timeout,
            should_cancel=self.should_cancel,
        )
        self.logs.append(result.log)
        return result

    def failed(self, result: executor.StepResult, what: str) -> Outcome:
        log = _tail("\n".join(self.logs))
        return Outcome(False, _tail(f"{what} step failed: {result.error}\n{log}"), result.error)

    def store_model(self, path: Path, what: str) -> str:
        if not path.is_file():
            raise SetupError(f"the algo wrote no {what} ({path.name})")
        return self.ctx.files.put_file(path)

    # --- kinds ----------------------------------------------------------------------

    def traintuple(self) -> Outcome:
        b = self.body
        cwd, script = self.install(b["algo_key"], "work")
        in_keys = b.get("in_models_keys") or []
        hashes = [self.model_hash(k, model_role(self.parent_kind(k))) for k in in_keys]
        models = self.models(hashes)
        output = self.out("model", "model")
        argv = executor.train_args(
            hashes,
            self.row["rank"],
            self.data(b["train_data_sample_keys"]),
            models,
            output,
            self.opener(b["data_manager_key"]),
            self.out("logs", "train.log"),
        )
        result = self.step(argv, cwd, script)
        if not result.ok:
            return self.failed(result, "train")
        return Outcome(
            True, _tail(result.log), result={"out_model": self.store_model(output, "model")}
        )

    def aggregatetuple(self) -> Outcome:
        b = self.body
        cwd, script = self.install(b["algo_key"], "work")
        hashes = [self.model_hash(k, model_role(self.parent_kind(k))) for k in b["in_models_keys"]]
        models = self.models(hashes)
        output = self.out("model", "model")
        argv = executor.aggregate_args(
            hashes, self.row["rank"], models, output, self.out("logs", "aggregate.log")
        )
        result = self.step(argv, cwd, script)
        if not result.ok:
            return self.failed(result, "aggregate")
        return Outcome(
            True, _tail(result.log), result={"out_model": self.store_model(output, "model")}
        )

    def composite_traintuple(self) -> Outcome:
        b = self.body
        cwd, script = self.install(b["algo_key"], "work")
        head = trunk = None
        if b.get("in_head_model_key"):
            head = self.model_hash(b["in_head_model_key"], "head")
            trunk_parent = b["in_trunk_model_key"]
            trunk = self.model_hash(trunk_parent, model_role(self.parent_kind(trunk_parent)))
        models = self.models([h for h in (head, trunk) if h])
        outputs = self.sandbox / "out" / "models"
        outputs.mkdir(parents=True)
        argv = executor.composite_train_args(
            self.row["rank"],
            head,
            trunk,
            models,
            outputs,
            "head",
            "trunk",
            self.data(b["train_data_sample_keys"]),
            self.opener(b["data_manager_key"]),
            log_path=self.out("logs", "train.log"),
        )
        result = self.step(argv, cwd, script)
        if not result.ok:
            return self.failed(result, "train")
        return Outcome(
            True,
            _tail(result.log),
            result={
                "out_head_model": self.store_model(outputs / "head", "head model"),
                "out_trunk_model": self.store_model(outputs / "trunk", "trunk model"),
            },
        )

    def testtuple(self) -> Outcome:
        b = self.body
        tested = self.ctx.store.conn.execute(
            "SELECT kind, body FROM tuples WHERE key = ?", (b["traintuple_key"],)
        ).fetchone()
        tested_body = loads(tested["body"])
        objective = registry.asset_body(self.ctx, "objective", b["objective_key"])
        if objective is None:
            raise SetupError(f"objective {b['objective_key']} does not exist")
        cwd, script = self.install(tested_body["algo_key"], "work")
        data = self.data(b["test_data_sample_keys"])
        opener = self.opener(b["data_manager_key"])
        predictions = self.out("pred", "pred")
        if tested["kind"] == "composite_traintuple":
            head = self.model_hash(b["traintuple_key"], "head")
            trunk = self.model_hash(b["traintuple_key"], "trunk")
            models = self.models([head, trunk])
            argv = executor.composite_predict_args(head, trunk, models, data, opener, predictions)
        else:
            model = self.model_hash(b["traintuple_key"], "model")
            models = self.models([model])
            argv = executor.predict_args(model, models, data, opener, predictions)
        result = self.step(argv, cwd, script)
        if not result.ok:
            return self.failed(result, "predict")
        metrics_cwd, metrics_script = self.install(objective["metrics_hash"], "metrics_work")
        perf_path = self.out("perf", "perf.json")
        argv = executor.metrics_args(predictions, perf_path, data, opener)
        result = self.step(argv, metrics_cwd, metrics_script)
        if not result.ok:
            return self.failed(result, "metrics")
        try:
            perf = executor.read_perf(perf_path)
        except ValueError as e:
            raise SetupError(str(e)) from e
        return Outcome(True, _tail("\n".join(self.logs)), result={"perf": perf})


def run_tuple(ctx: Context, row, should_cancel: Callable[[], bool]) -> Outcome:
    """Run a claimed tuple in a fresh sandbox; never raises for a failing algo."""
    run = _Run(ctx, row, should_cancel)
    shutil.rmtree(run.sandbox, ignore_errors=True)
    run.sandbox.mkdir(parents=True)
    try:
        kind = row["kind"]
        if kind not in ALGO_OF_TUPLE and kind != "testtuple":
            raise SetupError(f"unknown tuple kind {kind!r}")
        return getattr(run, kind)()
    except (SetupError, ValueError) as e:
        log = _tail("\n".join([*run.logs, str(e)]))
        return Outcome(False, log, str(e))
    finally:
        shutil.rmtree(run.sandbox, ignore_errors=True)
