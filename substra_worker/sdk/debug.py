"""The debug backend: every Client call runs on an embedded node in this process.

It answers exactly what the remote backend answers over HTTP (same shapes, same
``exist_ok`` rules, same exception classes: node refusals go through
``error_from_status``), with the original debug mode's one difference: adding a
tuple or a compute plan runs it, and whatever it unblocks, before the call returns.
A tuple of the call that ends ``failed`` raises ``ExecutionError`` carrying its log
tail (``.key``: the tuple's key, or the plan's id for ``add_compute_plan`` and
``update_compute_plan``); the tuple stays recorded ``failed``. Data samples with
``local=True`` are copied into the node (as an upload would carry them: symlinked files
as content); with ``local=False`` they are registered in place, anywhere unless
``data_roots`` are configured. Unlike the original debug mode, a
traintuple without ``in_models_keys`` works, and compute plans honour
``clean_models`` and can be canceled (from another thread while one runs).

The node's state is in ``settings.node_state_dir``, so it survives the process and
can be shared with a served node on the same folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from substra_worker.node.errors import NodeError
from substra_worker.node.node import Node
from substra_worker.sdk import assets
from substra_worker.sdk.backend import Backend
from substra_worker.sdk.exceptions import AlreadyExists, ExecutionError, error_from_status
from substra_worker.sdk.filters import search_value
from substra_worker.settings import Settings, get_settings

# the file of each downloadable asset, as node.file_path names it
DOWNLOAD_FIELDS = {
    "data_manager": "opener",
    "objective": "metrics",
    "algo": "file",
    "aggregate_algo": "file",
    "composite_algo": "file",
}


@contextlib.contextmanager
def _node_errors() -> Iterator[None]:
    """Node refusals become the SDK exceptions the same HTTP answer would give."""
    try:
        yield
    except NodeError as e:
        raise error_from_status(e.status, e.body()) from e


def _pkhash(answer: Any) -> str | None:
    if isinstance(answer, dict):
        return answer.get("pkhash") or answer.get("key") or answer.get("computePlanID")
    return None


class DebugBackend(Backend):
    """Drives an in-process ``Node`` whose state is under ``settings.node_state_dir``."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.node = Node(
            self.settings.node_state_dir,
            node_id=self.settings.node_id,
            concurrency=self.settings.node_concurrency,
            step_timeout=self.settings.step_timeout,
            python=self.settings.python,
            # in-process, the caller is the "server": local=False samples are read in place,
            # anywhere unless data roots are configured
            data_roots=self.settings.data_roots or (Path("/"),),
        )

    # --- session ----------------------------------------------------------------------

    def login(self, username: str, password: str) -> str:
        """Nothing to log in to: the node is in this process."""
        return ""

    def close(self) -> None:
        self.node.close()

    # --- add --------------------------------------------------------------------------

    def add(self, asset: str, data: dict, *, exist_ok: bool = False, local: bool = True) -> Any:
        info = assets.get(asset)
        if info.server == "data_sample":
            return self._add_data_samples(data, exist_ok=exist_ok, local=local)
        if info.server == "compute_plan":
            return self._add_compute_plan(data)
        try:
            with _node_errors():
                if info.is_tuple:
                    answer = self.node.add_tuple(info.server, data)
                else:
                    answer = self._add_file_asset(info, data)
        except AlreadyExists as e:
            if exist_ok and isinstance(e.pkhash, str):
                return self.get(info.name, e.pkhash)
            raise
        key = _pkhash(answer)
        if info.is_tuple:
            self._run_pending()
            shape = self.get(info.name, key)
            _raise_if_failed([shape])
            return shape
        return self.get(info.name, key)

    def _add_file_asset(self, info: assets.Asset, data: dict) -> dict:
        files = {part: Path(data[field]) for field, part in info.files if data.get(field)}
        fields = {field for field, _ in info.files}
        json_data = {k: v for k, v in data.items() if k not in fields}
        if info.server == "data_manager":
            return self.node.add_dataset(json_data, files)
        if info.server == "objective":
            return self.node.add_objective(json_data, files)
        return self.node.add_algo(info.server, json_data, files)

    def _add_data_samples(self, data: dict, *, exist_ok: bool, local: bool) -> Any:
        single = "path" in data and data.get("paths") is None
        try:
            with _node_errors():
                answer = self.node.add_data_samples(dict(data), local_copy=local)
        except AlreadyExists as e:
            if single and exist_ok and isinstance(e.pkhash, list) and len(e.pkhash) == 1:
                return {"pkhash": e.pkhash[0]}
            if single and exist_ok and isinstance(e.pkhash, str):
                return {"pkhash": e.pkhash}
            raise
        return answer[0] if single else answer

    def _add_compute_plan(self, data: dict) -> dict:
        with _node_errors():
            plan = self.node.add_compute_plan(data)
        return self._ran_plan(plan["computePlanID"], set())

    def _ran_plan(self, plan_id: str, before: set[str]) -> dict:
        """Run what is runnable, then the plan; ``ExecutionError`` if a new tuple failed."""
        self._run_pending()
        plan = self.get(assets.COMPUTE_PLAN.name, plan_id)
        new_keys = [
            key
            for field in (
                "traintupleKeys",
                "aggregatetupleKeys",
                "compositeTraintupleKeys",
                "testtupleKeys",
            )
            for key in plan[field]
            if key not in before
        ]
        if plan["status"] == "failed":
            shapes = []
            for kind, field in (
                ("traintuple", "traintupleKeys"),
                ("aggregatetuple", "aggregatetupleKeys"),
                ("composite_traintuple", "compositeTraintupleKeys"),
                ("testtuple", "testtupleKeys"),
            ):
                shapes.extend(self.get(kind, k) for k in plan[field] if k in new_keys)
            _raise_if_failed(shapes, plan_id=plan_id)
        return plan

    def _run_pending(self) -> None:
        with _node_errors():
            self.node.run_pending()

    # --- reads ------------------------------------------------------------------------

    def get(self, asset: str, key: str) -> dict:
        with _node_errors():
            return self.node.get(assets.get(asset).server, key)

    def list(self, asset: str, filters: list[str] | None = None) -> list[dict]:
        server = assets.get(asset).server
        search = search_value(filters) if filters is not None else None
        with _node_errors():
            answer = self.node.list(server, search or None)
        if server == "data_sample":
            return answer
        flat: list[dict] = []
        seen: set[str] = set()
        for group in answer:
            for item in group:
                ident = item.get("key") or item.get("computePlanID") or repr(item)
                if ident not in seen:
                    seen.add(ident)
                    flat.append(item)
        return flat

    def describe(self, asset: str, key: str) -> str:
        server = assets.get(asset).server
        with _node_errors():
            self.node.get(server, key)
            path = self.node.file_path(server, key, "description")
        return path.read_text(encoding="utf-8")

    def download(self, asset: str, key: str, destination_folder: str | Path) -> str:
        info = assets.get(asset)
        if info.download is None:
            raise ValueError(f"{info.name} has no file to download")
        with _node_errors():
            self.node.get(info.server, key)
            source = self.node.file_path(info.server, key, DOWNLOAD_FIELDS[info.server])
        folder = Path(destination_folder)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / info.download[1]
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".part")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return str(target)

    # --- compute plans ----------------------------------------------------------------

    def update_compute_plan(self, compute_plan_id: str, data: dict) -> dict:
        before = self._plan_keys(compute_plan_id)
        with _node_errors():
            self.node.update_compute_plan(compute_plan_id, data)
        return self._ran_plan(compute_plan_id, before)

    def _plan_keys(self, compute_plan_id: str) -> set[str]:
        plan = self.get(assets.COMPUTE_PLAN.name, compute_plan_id)
        return {
            key
            for field in (
                "traintupleKeys",
                "aggregatetupleKeys",
                "compositeTraintupleKeys",
                "testtupleKeys",
            )
            for key in plan[field]
        }

    def cancel_compute_plan(self, compute_plan_id: str) -> dict:
        with _node_errors():
            return self.node.cancel_compute_plan(compute_plan_id)

    # --- links, leaderboard, nodes ----------------------------------------------------

    def link_dataset_with_objective(self, dataset_key: str, objective_key: str) -> Any:
        with _node_errors():
            return self.node.update_dataset(dataset_key, objective_key)

    def link_dataset_with_data_samples(self, dataset_key: str, data_sample_keys: list[str]) -> Any:
        with _node_errors():
            return self.node.bulk_update_data_samples([dataset_key], list(data_sample_keys))

    def leaderboard(self, objective_key: str, sort: str = "desc") -> dict:
        with _node_errors():
            return self.node.leaderboard(objective_key, sort)

    def list_node(self) -> list[dict]:
        return self.node.list_node()


def _raise_if_failed(shapes: list[dict], *, plan_id: str | None = None) -> None:
    """``ExecutionError`` for the first failed tuple among ``shapes`` (own failures first)."""
    failed = [s for s in shapes if s.get("status") == "failed"]
    if not failed:
        return
    # a tuple whose own step failed explains more than the children it failed with it
    failed.sort(key=lambda s: s.get("log", "").startswith(("parent tuple", "a parent tuple")))
    first = failed[0]
    where = f"compute plan {plan_id}: " if plan_id else ""
    message = f"{where}tuple {first['key']} failed"
    reason = (first.get("log") or "").strip().splitlines()
    if reason:
        message += f": {reason[0]}"
    raise ExecutionError(message, key=plan_id or first["key"], log=first.get("log", ""))
