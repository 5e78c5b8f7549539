"""``Node``: the embedded Substra node, as the HTTP server and the debug backend see it.

Inputs are protocol-level (the snake_case dicts a reference client sends), outputs
are protocol-level (camelCase GET shapes and thin create bodies). Refusals raise
``node.errors`` exceptions carrying the status and body a real node answers.

State folder layout: ``node.db`` (SQLite), ``files/`` (content-addressed files),
``samples/<key>/`` (uploaded samples), ``cache/<key>/`` (extracted algo and metrics
archives), ``sandboxes/<tuple key>/`` (while a tuple runs), ``tmp/``. Several
``Node`` objects, in one process or several, may open the same folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from substra_worker.node import compute, plans, registry
from substra_worker.node.context import Context, check_key
from substra_worker.node.errors import BadRequest, NotFound
from substra_worker.node.files import FileStore
from substra_worker.node.scheduler import Scheduler
from substra_worker.node.search import filter_groups
from substra_worker.node.shapes import Reader
from substra_worker.node.store import Store, loads
from substra_worker.sdk import assets

FILE_ASSETS = ("data_manager", "objective", "algo", "aggregate_algo", "composite_algo")
FILE_FIELDS = {
    "data_manager": {"description": "description_hash", "opener": "opener_hash"},
    "objective": {"description": "description_hash", "metrics": "metrics_hash"},
    "algo": {"description": "description_hash", "file": "content_hash"},
    "aggregate_algo": {"description": "description_hash", "file": "content_hash"},
    "composite_algo": {"description": "description_hash", "file": "content_hash"},
}


def _server(asset: str) -> str:
    try:
        return assets.get(asset).server
    except ValueError as e:
        raise NotFound(f"unknown asset {asset!r}") from e


class Node:
    """An embedded Substra node whose state lives in ``state_dir``."""

    def __init__(
        self,
        state_dir: str | os.PathLike,
        *,
        node_id: str = "MyOrg1MSP",
        base_url: str = "",
        concurrency: int = 2,
        step_timeout: float = 3600.0,
        python: str = sys.executable,
        data_roots: Sequence[str | os.PathLike] = (),
    ):
        state = Path(state_dir)
        state.mkdir(parents=True, exist_ok=True)
        self.state_dir = state
        self.data_roots = tuple(data_roots)
        self._ctx = Context(
            state_dir=state,
            store=Store(state / "node.db"),
            files=FileStore(state / "files"),
            node_id=node_id,
            base_url=base_url,
            python=python,
            step_timeout=float(step_timeout),
        )
        self._scheduler = Scheduler(self._ctx, concurrency)

    # --- identity -------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._ctx.node_id

    @property
    def base_url(self) -> str:
        """The URL storageAddress values start with (the server sets it once it listens)."""
        return self._ctx.base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        self._ctx.base_url = value

    # --- creates --------------------------------------------------------------------

    def add_data_samples(
        self,
        data: dict,
        archives: Mapping[str, Path] | None = None,
        *,
        local_copy: bool = False,
    ) -> list[dict]:
        """Register data samples; ``[{"pkhash", "path", "validated": True}, ...]``.

        From ``archives`` (part name -> uploaded archive, extracted safely), else from
        ``data["path"]``/``data["paths"]``: server folders inside the data roots
        (``Forbidden`` otherwise), each a parent of sample folders with ``multiple``.
        ``local_copy=True`` (an addition for the in-process debug backend) copies the
        folders instead, wherever they are, as an upload would carry them.
        Any sample already present: ``Conflict(pkhash=[keys])`` and nothing is created.
        """
        return registry.add_data_samples(
            self._ctx, data, archives, data_roots=self.data_roots, local_copy=local_copy
        )

    def add_dataset(self, data: dict, files: Mapping[str, Path]) -> dict:
        """Register a dataset (files ``data_opener``, ``description``); ``{"pkhash"}``."""
        return registry.add_dataset(self._ctx, data, files)

    def add_objective(self, data: dict, files: Mapping[str, Path]) -> dict:
        """Register an objective (files ``metrics``, ``description``); ``{"pkhash"}``."""
        return registry.add_objective(self._ctx, data, files)

    def add_algo(self, kind: str, data: dict, files: Mapping[str, Path]) -> dict:
        """Register an algo of ``kind`` (files ``file``, ``description``); ``{"pkhash"}``."""
        return registry.add_algo(self._ctx, _server(kind), data, files)

    def add_tuple(self, kind: str, data: dict) -> dict:
        """Create a tuple of ``kind``; ``{"pkhash": key}``."""
        answer = compute.add_tuple(self._ctx, _server(kind), data)
        self.wake()
        return answer

    def add_compute_plan(self, data: dict) -> dict:
        """Create a compute plan and its tuples; the plan's GET shape."""
        answer = plans.add_compute_plan(self._ctx, data)
        self.wake()
        return answer

    def update_compute_plan(self, compute_plan_id: str, data: dict) -> dict:
        """Add tuples to a plan; the plan."""
        answer = plans.update_compute_plan(self._ctx, compute_plan_id, data)
        self.wake()
        return answer

    def cancel_compute_plan(self, compute_plan_id: str) -> dict:
        """Cancel the plan's tuples not done yet (running steps are killed); the plan."""
        return plans.cancel_compute_plan(self._ctx, compute_plan_id)

    def update_dataset(self, dataset_key: str, objective_key: str) -> dict:
        """Link a dataset to an objective; ``{"pkhash": dataset_key}``."""
        return registry.update_dataset(self._ctx, dataset_key, objective_key)

    def bulk_update_data_samples(
        self, data_manager_keys: list[str], data_sample_keys: list[str]
    ) -> dict:
        """Link data samples to datasets; ``{"keys": data_sample_keys}``."""
        return registry.bulk_update_data_samples(self._ctx, data_manager_keys, data_sample_keys)

    # --- reads ----------------------------------------------------------------------

    def get(self, asset: str, key: str) -> dict:
        """The GET shape of one asset (server or public asset name)."""
        server = _server(asset)
        check_key(key)
        with self._ctx.store.snapshot() as conn:
            shape = self._get(Reader(self._ctx, conn), server, key)
        if shape is None:
            raise NotFound(f"no {assets.get(server).name} with key {key}")
        return shape

    def _get(self, reader: Reader, server: str, key: str) -> dict | None:
        conn = reader.conn
        if server == "data_manager":
            return reader.dataset(key)
        if server == "objective":
            return reader.objective(key)
        if server in ("algo", "aggregate_algo", "composite_algo"):
            return reader.algo(server, key)
        if server == "compute_plan":
            row = conn.execute("SELECT * FROM plans WHERE id = ?", (key,)).fetchone()
            return reader.plan(row) if row else None
        if server == "data_sample":
            row = conn.execute("SELECT * FROM samples WHERE key = ?", (key,)).fetchone()
            return reader.data_sample(row) if row else None
        if server in compute.KIND_LABELS:
            row = conn.execute(
                "SELECT * FROM tuples WHERE key = ? AND kind = ?", (key, server)
            ).fetchone()
            return reader.tuple(row) if row else None
        raise NotFound(f"there is no GET of {server!r} by key")

    def _all(self, reader: Reader, server: str) -> list[dict]:
        conn = reader.conn
        if server == "data_manager":
            rows = conn.execute(
                "SELECT key, body FROM assets WHERE kind = 'data_manager' ORDER BY seq"
            )
            return [reader.dataset(r["key"], loads(r["body"])) for r in rows.fetchall()]
        if server == "objective":
            rows = conn.execute(
                "SELECT key, body FROM assets WHERE kind = 'objective' ORDER BY seq"
            )
            return [reader.objective(r["key"], loads(r["body"])) for r in rows.fetchall()]
        if server in ("algo", "aggregate_algo", "composite_algo"):
            rows = conn.execute(
                "SELECT key, body FROM assets WHERE kind = ? ORDER BY seq", (server,)
            ).fetchall()
            return [reader.algo(server, r["key"], loads(r["body"])) for r in rows]
        if server == "compute_plan":
            return [
                reader.plan(r) for r in conn.execute("SELECT * FROM plans ORDER BY seq").fetchall()
            ]
        if server == "data_sample":
            rows = conn.execute("SELECT * FROM samples ORDER BY seq").fetchall()
            return [reader.data_sample(r) for r in rows]
        if server in compute.KIND_LABELS:
            rows = conn.execute(
                "SELECT * FROM tuples WHERE kind = ? ORDER BY seq", (server,)
            ).fetchall()
            return [reader.tuple(r) for r in rows]
        if server == "node":
            return self.list_node()
        raise NotFound(f"unknown asset {server!r}")

    def list(self, asset: str, search: str | None = None) -> list:
        """All assets of a kind: a list of lists, one per OR group of ``search``.

        ``data_sample`` answers a flat list and ignores ``search``, as the real node.
        See ``node.search`` for the filter semantics.
        """
        server = _server(asset)
        with self._ctx.store.snapshot() as conn:
            reader = Reader(self._ctx, conn)
            items = self._all(reader, server)
            if server in ("data_sample", "node"):
                return items
            loaded: dict[str, list[dict]] = {server: items}

            def load(other: str) -> list[dict]:
                if other not in loaded:
                    loaded[other] = self._all(reader, other)
                return loaded[other]

            return filter_groups(server, items, search, load)

    def leaderboard(self, objective_key: str, sort: str = "desc") -> dict:
        """The objective and its certified, done testtuples ordered by perf (``asc``/``desc``)."""
        check_key(objective_key, "objective key")
        if sort not in ("asc", "desc"):
            raise BadRequest(f"sort must be 'asc' or 'desc', not {sort!r}")
        with self._ctx.store.snapshot() as conn:
            reader = Reader(self._ctx, conn)
            objective = reader.objective(objective_key)
            if objective is None:
                raise NotFound(f"no objective with key {objective_key}")
            entries = []
            for row in conn.execute(
                "SELECT * FROM tuples WHERE kind = 'testtuple' AND status = 'done' ORDER BY seq"
            ).fetchall():
                body = loads(row["body"])
                if body["objective_key"] != objective_key or not body.get("certified"):
                    continue
                shape = reader.tuple(row)
                entries.append(
                    {
                        "algo": shape["algo"],
                        "creator": shape["creator"],
                        "key": shape["key"],
                        "traintupleKey": shape["traintupleKey"],
                        "perf": shape["dataset"]["perf"],
                        "tag": shape["tag"],
                    }
                )
        entries.sort(key=lambda e: e["perf"] if e["perf"] is not None else float("-inf"))
        if sort == "desc":
            entries.reverse()
        return {"objective": objective, "testtuples": entries}

    def list_node(self) -> list[dict]:
        return [{"id": self.node_id, "isCurrent": True}]

    def file_path(self, asset: str, key: str, field: str) -> Path:
        """The stored file behind a storageAddress; ``NotFound`` when there is none.

        ``field``: ``description``, ``opener`` (dataset), ``metrics`` (objective), ``file``
        (algo archive) or ``model`` (with asset ``model`` and the model hash as key).
        """
        check_key(key)
        ctx = self._ctx
        if asset == "model" or field == "model":
            row = ctx.store.conn.execute(
                "SELECT 1 FROM models WHERE hash = ? AND deleted = 0", (key,)
            ).fetchone()
            if row is None or not ctx.files.exists(key):
                raise NotFound(f"no model with hash {key}")
            return ctx.files.path(key)
        server = _server(asset)
        fields = FILE_FIELDS.get(server)
        if fields is None or field not in fields:
            raise NotFound(f"{assets.get(server).name} has no file {field!r}")
        body = registry.asset_body(ctx, server, key)
        if body is None:
            raise NotFound(f"no {assets.get(server).name} with key {key}")
        path = ctx.files.path(body[fields[field]])
        if not path.is_file():
            raise NotFound(f"the {field} file of {key} is missing from the file store")
        return path

    # --- execution ------------------------------------------------------------------

    def run_pending(self) -> None:
        """Run every runnable tuple now (and what they unblock); return when idle."""
        self._scheduler.run_pending()

    def start(self) -> None:
        """Start the background runners (served node)."""
        self._scheduler.start()

    def stop(self, timeout: float = 10) -> None:
        """Stop the background runners; running steps are killed and run again later."""
        self._scheduler.stop(timeout)

    def wake(self) -> None:
        """Tell idle background runners that tuples may have become runnable."""
        self._scheduler.wake()

    def close(self) -> None:
        self.stop()
        self._ctx.store.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
