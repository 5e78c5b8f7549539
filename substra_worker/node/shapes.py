"""The camelCase GET shapes of the Substra protocol, built from the store's records.

One ``Reader`` serves one request: it memoizes the assets it looks up, so listing a
thousand tuples reads each algo and dataset once.

Shapes that the protocol page leaves open, as answered here:

- ``computePlanID`` is ``""`` for a tuple outside any plan; ``objectiveKey`` is ``""``
  for a dataset without objective.
- ``inModels`` entries and in-head/trunk models carry ``hash`` and ``storageAddress``
  ``""`` while the parent has not produced its model yet.
- A composite traintuple has the chaincode's fields (no ``inModels``/``outModel``:
  its models are ``inHeadModel``/``inTrunkModel``/``outHeadModel``/``outTrunkModel``),
  plus ``permissions``.
- A testtuple's ``dataset.perf`` is null until it is done; its ``rank`` is the rank of
  the tuple it tests; ``traintupleType`` is ``traintuple``, ``compositeTraintuple`` or
  ``aggregatetuple``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from substra_worker.node.context import Context, permissions_shape
from substra_worker.node.store import loads

ALGO_OF_TUPLE = {
    "traintuple": "algo",
    "aggregatetuple": "aggregate_algo",
    "composite_traintuple": "composite_algo",
}
TRAINTUPLE_TYPES = {
    "traintuple": "traintuple",
    "aggregatetuple": "aggregatetuple",
    "composite_traintuple": "compositeTraintuple",
}
TUPLE_KEY_FIELDS = {
    "traintuple": "traintupleKeys",
    "aggregatetuple": "aggregatetupleKeys",
    "composite_traintuple": "compositeTraintupleKeys",
    "testtuple": "testtupleKeys",
}
MODEL_RESULT = {"model": "out_model", "head": "out_head_model", "trunk": "out_trunk_model"}


def model_role(parent_kind: str) -> str:
    """Which model of a parent a child consumes as "its model": a composite's trunk."""
    return "trunk" if parent_kind == "composite_traintuple" else "model"


class Reader:
    """Builds GET shapes, memoizing the records it reads."""

    def __init__(self, ctx: Context, conn: sqlite3.Connection | None = None):
        self.ctx = ctx
        self.conn = conn or ctx.store.conn
        self._assets: dict[tuple[str, str], dict | None] = {}
        self._tuples: dict[str, sqlite3.Row | None] = {}
        self._links: dict[str, list[str]] = {}

    # --- records ----------------------------------------------------------------------

    def asset(self, kind: str, key: str) -> dict | None:
        if (kind, key) not in self._assets:
            row = self.conn.execute(
                "SELECT body FROM assets WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
            self._assets[(kind, key)] = loads(row["body"]) if row else None
        return self._assets[(kind, key)]

    def tuple_row(self, key: str) -> sqlite3.Row | None:
        if key not in self._tuples:
            self._tuples[key] = self.conn.execute(
                "SELECT * FROM tuples WHERE key = ?", (key,)
            ).fetchone()
        return self._tuples[key]

    def linked_samples(self, dataset_key: str) -> list[tuple[str, bool]]:
        rows = self.conn.execute(
            "SELECT s.key, s.test_only FROM sample_links l JOIN samples s ON s.key = l.sample_key "
            "WHERE l.dataset_key = ? ORDER BY l.seq",
            (dataset_key,),
        )
        return [(row["key"], bool(row["test_only"])) for row in rows]

    # --- file assets --------------------------------------------------------------------

    def _file_ref(self, server: str, key: str, digest: str, route: str) -> dict[str, str]:
        return {"hash": digest, "storageAddress": self.ctx.address(server, key, route)}

    def dataset(self, key: str, body: dict | None = None) -> dict | None:
        body = body or self.asset("data_manager", key)
        if body is None:
            return None
        samples = self.linked_samples(key)
        return {
            "key": key,
            "name": body["name"],
            "objectiveKey": body.get("objective_key") or "",
            "description": self._file_ref(
                "data_manager", key, body["description_hash"], "description"
            ),
            "opener": self._file_ref("data_manager", key, body["opener_hash"], "opener"),
            "owner": body["owner"],
            "permissions": permissions_shape(body["permissions"]),
            "type": body["type"],
            "trainDataSampleKeys": [k for k, test in samples if not test],
            "testDataSampleKeys": [k for k, test in samples if test],
            "metadata": body.get("metadata") or {},
        }

    def objective(self, key: str, body: dict | None = None) -> dict | None:
        body = body or self.asset("objective", key)
        if body is None:
            return None
        test_dataset = None
        if body.get("test_data_manager_key"):
            dm = self.asset("data_manager", body["test_data_manager_key"]) or {}
            test_dataset = {
                "dataManagerKey": body["test_data_manager_key"],
                "dataSampleKeys": list(body.get("test_data_sample_keys") or []),
                "metadata": dm.get("metadata") or {},
                "worker": dm.get("owner", self.ctx.node_id),
            }
        return {
            "key": key,
            "name": body["name"],
            "description": self._file_ref(
                "objective", key, body["description_hash"], "description"
            ),
            "metrics": {
                "name": body.get("metrics_name", ""),
                **self._file_ref("objective", key, body["metrics_hash"], "metrics"),
            },
            "owner": body["owner"],
            "testDataset": test_dataset,
            "permissions": permissions_shape(body["permissions"]),
            "metadata": body.get("metadata") or {},
        }

    def algo(self, kind: str, key: str, body: dict | None = None) -> dict | None:
        body = body or self.asset(kind, key)
        if body is None:
            return None
        return {
            "key": key,
            "name": body["name"],
            "content": self._file_ref(kind, key, body["content_hash"], "file"),
            "description": self._file_ref(kind, key, body["description_hash"], "description"),
            "owner": body["owner"],
            "permissions": permissions_shape(body["permissions"]),
            "metadata": body.get("metadata") or {},
        }

    def data_sample(self, row: sqlite3.Row) -> dict:
        keys = [
            r["dataset_key"]
            for r in self.conn.execute(
                "SELECT dataset_key FROM sample_links WHERE sample_key = ? ORDER BY seq",
                (row["key"],),
            )
        ]
        return {"key": row["key"], "owner": row["owner"], "dataManagerKeys": keys}

    # --- tuples ---------------------------------------------------------------------------

    def _algo_ref(self, kind: str, key: str) -> dict[str, str]:
        body = self.asset(kind, key) or {}
        return {
            "name": body.get("name", ""),
            "hash": key,
            "storageAddress": self.ctx.address(kind, key, "file"),
        }

    def model_hash(self, parent_key: str, role: str) -> str:
        row = self.tuple_row(parent_key)
        if row is None:
            return ""
        return (loads(row["result"]) or {}).get(MODEL_RESULT[role]) or ""

    def _model_ref(self, digest: str) -> dict[str, str]:
        return {
            "hash": digest,
            "storageAddress": self.ctx.address("model", digest, "file") if digest else "",
        }

    def _in_model(self, parent_key: str, role: str) -> dict[str, str]:
        return {"traintupleKey": parent_key, **self._model_ref(self.model_hash(parent_key, role))}

    def _model_role(self, parent_key: str) -> str:
        row = self.tuple_row(parent_key)
        return model_role(row["kind"]) if row is not None else "model"

    def _dataset_ref(self, body: dict) -> dict[str, Any]:
        dm = self.asset("data_manager", body["data_manager_key"]) or {}
        return {
            "worker": dm.get("owner", self.ctx.node_id),
            "keys": list(body.get("train_data_sample_keys") or []),
            "openerHash": body["data_manager_key"],
            "metadata": dm.get("metadata") or {},
        }

    def tuple(self, row: sqlite3.Row) -> dict:
        kind = row["kind"]
        body = loads(row["body"])
        result = loads(row["result"]) or {}
        common = {
            "key": row["key"],
            "creator": body["creator"],
            "computePlanID": row["compute_plan_id"],
            "log": row["log"],
            "rank": row["rank"],
            "status": row["status"],
            "tag": body.get("tag", ""),
            "metadata": body.get("metadata") or {},
        }
        if kind == "testtuple":
            return self._testtuple(row, body, result, common)
        shape: dict[str, Any] = {"key": row["key"]}
        shape["algo"] = self._algo_ref(ALGO_OF_TUPLE[kind], body["algo_key"])
        shape.update(common)
        if kind in ("traintuple", "composite_traintuple"):
            shape["dataset"] = self._dataset_ref(body)
        if kind == "composite_traintuple":
            head, trunk = body.get("in_head_model_key"), body.get("in_trunk_model_key")
            shape["inHeadModel"] = self._in_model(head, "head") if head else None
            shape["inTrunkModel"] = (
                self._in_model(trunk, self._model_role(trunk)) if trunk else None
            )
            head_hash = result.get("out_head_model")
            trunk_hash = result.get("out_trunk_model")
            shape["outHeadModel"] = {
                "outModel": {"hash": head_hash} if head_hash else None,
                "permissions": permissions_shape(
                    {"public": False, "authorized_ids": [self.ctx.node_id]}
                ),
            }
            shape["outTrunkModel"] = {
                "outModel": self._model_ref(trunk_hash) if trunk_hash else None,
                "permissions": permissions_shape(body["out_trunk_model_permissions"]),
            }
            shape["permissions"] = permissions_shape(body["permissions"])
            return shape
        in_keys = body.get("in_models_keys") or []
        shape["inModels"] = (
            [self._in_model(k, self._model_role(k)) for k in in_keys] if in_keys else None
        )
        out = result.get("out_model")
        shape["outModel"] = self._model_ref(out) if out else None
        shape["permissions"] = permissions_shape(body["permissions"])
        if kind == "aggregatetuple":
            shape["worker"] = body.get("worker") or self.ctx.node_id
        return shape

    def _testtuple(self, row: sqlite3.Row, body: dict, result: dict, common: dict) -> dict:
        tested = self.tuple_row(body["traintuple_key"])
        tested_kind = tested["kind"] if tested is not None else "traintuple"
        tested_body = loads(tested["body"]) if tested is not None else {}
        objective = self.asset("objective", body["objective_key"]) or {}
        dm = self.asset("data_manager", body["data_manager_key"]) or {}
        return {
            "key": row["key"],
            "algo": self._algo_ref(ALGO_OF_TUPLE[tested_kind], tested_body.get("algo_key", "")),
            "certified": bool(body.get("certified")),
            "computePlanID": common["computePlanID"],
            "creator": common["creator"],
            "dataset": {
                "worker": dm.get("owner", self.ctx.node_id),
                "keys": list(body.get("test_data_sample_keys") or []),
                "openerHash": body["data_manager_key"],
                "perf": result.get("perf"),
            },
            "objective": {
                "hash": body["objective_key"],
                "metrics": {
                    "hash": objective.get("metrics_hash", ""),
                    "storageAddress": self.ctx.address(
                        "objective", body["objective_key"], "metrics"
                    ),
                },
            },
            "log": common["log"],
            "rank": common["rank"],
            "status": common["status"],
            "tag": common["tag"],
            "traintupleKey": body["traintuple_key"],
            "traintupleType": TRAINTUPLE_TYPES[tested_kind],
            "metadata": common["metadata"],
        }

    # --- compute plans ----------------------------------------------------------------------

    def plan(self, row: sqlite3.Row) -> dict:
        body = loads(row["body"])
        plan_id = row["id"]
        keys: dict[str, list[str]] = {field: [] for field in TUPLE_KEY_FIELDS.values()}
        counts: dict[str, int] = {}
        for t in self.conn.execute(
            "SELECT key, kind, status FROM tuples WHERE compute_plan_id = ? ORDER BY seq",
            (plan_id,),
        ):
            keys[TUPLE_KEY_FIELDS[t["kind"]]].append(t["key"])
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        total = sum(counts.values())
        return {
            "computePlanID": plan_id,
            **keys,
            "cleanModels": bool(body.get("clean_models")),
            "tag": body.get("tag", ""),
            "metadata": body.get("metadata") or {},
            "status": plan_status(counts, total, bool(body.get("canceled"))),
            "tupleCount": total,
            "doneCount": counts.get("done", 0),
            "IDToKey": dict(body.get("id_to_key") or {}),
        }


def plan_status(counts: dict[str, int], total: int, canceled: bool) -> str:
    """A plan's status from its tuples' statuses.

    failed if any failed; canceled if any was canceled (or the plan was and is not
    finished); done when every tuple is done (an empty plan too); doing when some run or
    some are done; todo when some can run; waiting otherwise.
    """
    done = counts.get("done", 0)
    if counts.get("failed"):
        return "failed"
    if counts.get("canceled") or (canceled and done < total):
        return "canceled"
    if done == total:
        return "done"
    if counts.get("doing") or done:
        return "doing"
    if counts.get("todo"):
        return "todo"
    return "waiting"
