"""Tuples: creation (checks, key, rank, first status) and status transitions.

Statuses move ``waiting -> todo -> doing -> done | failed | canceled``. A tuple is
``todo`` once every parent is ``done``; a failed parent fails its waiting
descendants, a canceled one cancels them. Every function here runs inside the
caller's write transaction, so a transition and its consequences are atomic.

Parents and the model they hand over (``edges.role``):

================================ ===================================== ===================
child field                      parent kinds                          role
================================ ===================================== ===================
traintuple/aggregatetuple        traintuple, aggregatetuple            model
``in_models_keys``               composite_traintuple                  trunk
composite ``in_head_model_key``  composite_traintuple                  head
composite ``in_trunk_model_key`` composite_traintuple / aggregatetuple trunk / model
testtuple ``traintuple_key``     traintuple, aggregatetuple            model
                                 composite_traintuple                  head and trunk
================================ ===================================== ===================

The ``rank`` a caller passes is ignored: a tuple without parents has rank 0, otherwise
1 + the highest parent rank; a testtuple has the rank of the tuple it tests.

``clean_models`` (a plan's flag): once every consumer of a plan tuple's model is done,
and at least one of them trained on it (not only tested it), the model file is deleted
(the GET keeps its hash). Models nothing trained on -- the plan's final models -- are
kept. A tuple added later that needs a deleted model is refused (400).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from substra_worker.node import keys, registry
from substra_worker.node.context import (
    Context,
    check_key,
    key_list,
    metadata,
    optional_str,
    permissions,
)
from substra_worker.node.errors import BadRequest, Conflict
from substra_worker.node.shapes import MODEL_RESULT, model_role
from substra_worker.node.store import dumps, loads
from substra_worker.sdk.assets import TUPLE_KINDS

MODEL_PARENTS = ("traintuple", "aggregatetuple", "composite_traintuple")
KIND_LABELS = {
    "traintuple": "traintuple",
    "aggregatetuple": "aggregatetuple",
    "composite_traintuple": "composite traintuple",
    "testtuple": "testtuple",
}
ACTIVE = ("waiting", "todo", "doing")


@dataclass
class TupleSpec:
    """A checked tuple, ready to insert."""

    kind: str
    key: str
    body: dict[str, Any]
    parents: list[tuple[str, str]] = field(default_factory=list)  # (parent key, role)
    rank: int = 0
    compute_plan_id: str = ""


# --- creation -----------------------------------------------------------------------


def _parent(conn: sqlite3.Connection, key: Any, field_name: str, allowed: tuple[str, ...]):
    check_key(key, field_name)
    row = conn.execute("SELECT * FROM tuples WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise BadRequest(f"{field_name}: no tuple with key {key}")
    if row["kind"] not in allowed:
        names = ", ".join(KIND_LABELS[k] for k in allowed)
        raise BadRequest(f"{field_name}: {key} is a {KIND_LABELS[row['kind']]}, not a {names}")
    return row


def _merge_permissions(*perms: dict[str, Any]) -> dict[str, Any]:
    """What a tuple may be processed by: the intersection of its inputs' permissions."""
    public = all(p["public"] for p in perms)
    ids: set[str] | None = None
    for p in perms:
        if not p["public"]:
            ids = set(p["authorized_ids"]) if ids is None else ids & set(p["authorized_ids"])
    return {"public": public, "authorized_ids": sorted(ids or [])}


def _train_samples(ctx: Context, dm_key: str, data: dict, field_name: str) -> list[str]:
    samples = key_list(data, field_name, required=True)
    registry.check_samples(ctx, dm_key, samples, field_name)
    marks = ",".join("?" * len(samples))
    test_only = [
        row["key"]
        for row in ctx.store.conn.execute(
            f"SELECT key FROM samples WHERE test_only = 1 AND key IN ({marks})", samples
        )
    ]
    if test_only:
        raise BadRequest(f"{field_name}: test-only data samples cannot train: {test_only}")
    return samples


def _plan_id(ctx: Context, data: dict, plan_id: str | None) -> str:
    if plan_id is not None:
        return plan_id
    given = data.get("compute_plan_id") or ""
    if given:
        check_key(given, "compute_plan_id")
        row = ctx.store.conn.execute("SELECT body FROM plans WHERE id = ?", (given,)).fetchone()
        if row is None:
            raise BadRequest(f"compute_plan_id: no compute plan with id {given}")
        if loads(row["body"]).get("canceled"):
            raise BadRequest(f"compute plan {given} is canceled")
    return given


def build(ctx: Context, kind: str, data: dict, *, plan_id: str | None = None) -> TupleSpec:
    """Check a tuple's input dict (as ``add_<kind>`` receives it) and compute its key."""
    if kind not in TUPLE_KINDS:
        raise BadRequest(f"unknown tuple kind {kind!r}")
    if not isinstance(data, dict):
        raise BadRequest("the tuple must be a JSON object")
    conn = ctx.store.conn
    creator = ctx.node_id
    common = {"tag": optional_str(data, "tag"), "metadata": metadata(data), "creator": creator}
    if kind == "testtuple":
        return _build_testtuple(ctx, data, common)
    plan = _plan_id(ctx, data, plan_id)
    if kind == "traintuple":
        algo = registry.require_asset(ctx, "algo", data.get("algo_key"), "algo_key")
        dm = registry.require_asset(
            ctx, "data_manager", data.get("data_manager_key"), "data_manager_key"
        )
        dm_key = data["data_manager_key"]
        samples = _train_samples(ctx, dm_key, data, "train_data_sample_keys")
        in_keys = key_list(data, "in_models_keys")
        parents = [_parent(conn, k, "in_models_keys", MODEL_PARENTS) for k in in_keys]
        body = {
            "algo_key": data["algo_key"],
            "data_manager_key": dm_key,
            "train_data_sample_keys": samples,
            "in_models_keys": in_keys,
            "permissions": _merge_permissions(algo["permissions"], dm["permissions"]),
            **common,
        }
        edges = [(p["key"], model_role(p["kind"])) for p in parents]
        parts = keys.tuple_key_parts(
            creator=creator,
            algo_key=data["algo_key"],
            data_manager_key=dm_key,
            compute_plan_id=plan,
            sample_keys=samples,
            in_model_keys=in_keys,
        )
    elif kind == "aggregatetuple":
        algo = registry.require_asset(ctx, "aggregate_algo", data.get("algo_key"), "algo_key")
        in_keys = key_list(data, "in_models_keys", required=True)
        parents = [_parent(conn, k, "in_models_keys", MODEL_PARENTS) for k in in_keys]
        worker = optional_str(data, "worker") or ctx.node_id
        if worker != ctx.node_id:
            raise BadRequest(f"worker: unknown node {worker!r} (this node is {ctx.node_id!r})")
        body = {
            "algo_key": data["algo_key"],
            "in_models_keys": in_keys,
            "worker": worker,
            "permissions": _merge_permissions(algo["permissions"]),
            **common,
        }
        edges = [(p["key"], model_role(p["kind"])) for p in parents]
        parts = keys.tuple_key_parts(
            creator=creator, algo_key=data["algo_key"], compute_plan_id=plan, in_model_keys=in_keys
        )
    else:  # composite_traintuple
        algo = registry.require_asset(ctx, "composite_algo", data.get("algo_key"), "algo_key")
        dm = registry.require_asset(
            ctx, "data_manager", data.get("data_manager_key"), "data_manager_key"
        )
        dm_key = data["data_manager_key"]
        samples = _train_samples(ctx, dm_key, data, "train_data_sample_keys")
        head_key = data.get("in_head_model_key") or None
        trunk_key = data.get("in_trunk_model_key") or None
        if bool(head_key) != bool(trunk_key):
            raise BadRequest(
                "in_head_model_key and in_trunk_model_key go together: give both or none"
            )
        parents, edges = [], []
        if head_key:
            head = _parent(conn, head_key, "in_head_model_key", ("composite_traintuple",))
            trunk = _parent(
                conn, trunk_key, "in_trunk_model_key", ("composite_traintuple", "aggregatetuple")
            )
            parents = [head, trunk]
            edges = [(head["key"], "head"), (trunk["key"], model_role(trunk["kind"]))]
        trunk_perms = permissions(
            data.get("out_trunk_model_permissions"), "out_trunk_model_permissions"
        )
        body = {
            "algo_key": data["algo_key"],
            "data_manager_key": dm_key,
            "train_data_sample_keys": samples,
            "in_head_model_key": head_key,
            "in_trunk_model_key": trunk_key,
            "out_trunk_model_permissions": {
                "public": False,
                "authorized_ids": trunk_perms["authorized_ids"],
            },
            "permissions": _merge_permissions(algo["permissions"], dm["permissions"]),
            **common,
        }
        parts = keys.tuple_key_parts(
            creator=creator,
            algo_key=data["algo_key"],
            data_manager_key=dm_key,
            compute_plan_id=plan,
            sample_keys=samples,
            in_model_keys=[head_key, trunk_key],
        )
    rank = 1 + max(p["rank"] for p in parents) if parents else 0
    return TupleSpec(kind, keys.tuple_key(kind, parts), body, edges, rank, plan)


def _build_testtuple(ctx: Context, data: dict, common: dict) -> TupleSpec:
    conn = ctx.store.conn
    objective = registry.require_asset(ctx, "objective", data.get("objective_key"), "objective_key")
    tested = _parent(conn, data.get("traintuple_key"), "traintuple_key", MODEL_PARENTS)
    dm_key = data.get("data_manager_key") or ""
    samples = key_list(data, "test_data_sample_keys")
    if not dm_key and not samples:
        dm_key = objective.get("test_data_manager_key") or ""
        samples = list(objective.get("test_data_sample_keys") or [])
        if not dm_key or not samples:
            raise BadRequest(
                "the objective has no test dataset: give data_manager_key and test_data_sample_keys"
            )
    elif not dm_key or not samples:
        raise BadRequest(
            "data_manager_key and test_data_sample_keys go together: give both or none"
        )
    registry.require_asset(ctx, "data_manager", dm_key, "data_manager_key")
    registry.check_samples(ctx, dm_key, samples, "test_data_sample_keys")
    certified = dm_key == objective.get("test_data_manager_key") and sorted(samples) == sorted(
        objective.get("test_data_sample_keys") or []
    )
    body = {
        "objective_key": data["objective_key"],
        "traintuple_key": tested["key"],
        "data_manager_key": dm_key,
        "test_data_sample_keys": samples,
        "certified": certified,
        **common,
    }
    if tested["kind"] == "composite_traintuple":
        edges = [(tested["key"], "head"), (tested["key"], "trunk")]
    else:
        edges = [(tested["key"], "model")]
    plan = tested["compute_plan_id"]
    parts = keys.tuple_key_parts(
        creator=common["creator"],
        algo_key=data["objective_key"],
        data_manager_key=dm_key,
        compute_plan_id=plan,
        sample_keys=samples,
        in_model_keys=[tested["key"]],
    )
    return TupleSpec(
        "testtuple", keys.tuple_key("testtuple", parts), body, edges, tested["rank"], plan
    )


def insert(ctx: Context, conn: sqlite3.Connection, spec: TupleSpec) -> str:
    """Insert a checked tuple with its first status (in the caller's transaction)."""
    if conn.execute("SELECT 1 FROM tuples WHERE key = ?", (spec.key,)).fetchone():
        raise Conflict(f"this {KIND_LABELS[spec.kind]} already exists", pkhash=spec.key)
    statuses = []
    for parent, role in spec.parents:
        row = conn.execute("SELECT status FROM tuples WHERE key = ?", (parent,)).fetchone()
        statuses.append(row["status"])
        if row["status"] == "done":
            gone = conn.execute(
                "SELECT 1 FROM models WHERE tuple_key = ? AND role = ? AND deleted = 1",
                (parent, role),
            ).fetchone()
            if gone:
                raise BadRequest(
                    f"the {role} model of tuple {parent} was deleted (clean_models); "
                    "it cannot be used any more"
                )
    log = ""
    if "failed" in statuses:
        status, log = "failed", "a parent tuple failed"
    elif "canceled" in statuses:
        status, log = "canceled", "a parent tuple was canceled"
    elif all(s == "done" for s in statuses):
        status = "todo"
    else:
        status = "waiting"
    seq = ctx.store.next_seq(conn)
    conn.execute(
        "INSERT INTO tuples (key, kind, seq, status, rank, compute_plan_id, body, log) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (spec.key, spec.kind, seq, status, spec.rank, spec.compute_plan_id, dumps(spec.body), log),
    )
    conn.executemany(
        "INSERT OR IGNORE INTO edges (child, parent, role) VALUES (?, ?, ?)",
        [(spec.key, parent, role) for parent, role in spec.parents],
    )
    return spec.key


def add_tuple(ctx: Context, kind: str, data: dict) -> dict:
    """``POST /<tuple kind>/``: create one tuple; ``{"pkhash": key}``."""
    with ctx.store.transaction() as conn:
        spec = build(ctx, kind, data)
        insert(ctx, conn, spec)
    return {"pkhash": spec.key}


# --- transitions -------------------------------------------------------------------------


def _spread(conn: sqlite3.Connection, key: str, status: str, log: str) -> list[str]:
    """Give ``status`` to every waiting/todo descendant of ``key``; return their keys."""
    changed, frontier = [], [key]
    while frontier:
        parent = frontier.pop()
        for row in conn.execute(
            "SELECT DISTINCT e.child FROM edges e JOIN tuples t ON t.key = e.child "
            "WHERE e.parent = ? AND t.status IN ('waiting', 'todo')",
            (parent,),
        ).fetchall():
            conn.execute(
                "UPDATE tuples SET status = ?, log = ? WHERE key = ?", (status, log, row["child"])
            )
            changed.append(row["child"])
            frontier.append(row["child"])
    return changed


def mark_done(
    ctx: Context, conn: sqlite3.Connection, key: str, claim: str, result: dict, log: str
) -> list[str] | None:
    """Record a finished run; unblock children; apply clean_models.

    Returns the model hashes whose files can now be deleted (delete them after the
    commit), or None when the tuple is no longer ours (canceled meanwhile).
    """
    cur = conn.execute(
        "UPDATE tuples SET status = 'done', result = ?, log = ?, claimed_by = NULL, "
        "heartbeat = NULL WHERE key = ? AND status = 'doing' AND claimed_by = ?",
        (dumps(result), log, key, claim),
    )
    if cur.rowcount == 0:
        return None
    for role, result_field in MODEL_RESULT.items():
        if result.get(result_field):
            conn.execute(
                "INSERT OR REPLACE INTO models (tuple_key, role, hash, deleted) "
                "VALUES (?, ?, ?, 0)",
                (key, role, result[result_field]),
            )
    for row in conn.execute(
        "SELECT DISTINCT e.child FROM edges e JOIN tuples t ON t.key = e.child "
        "WHERE e.parent = ? AND t.status = 'waiting'",
        (key,),
    ).fetchall():
        pending = conn.execute(
            "SELECT COUNT(*) FROM edges e JOIN tuples t ON t.key = e.parent "
            "WHERE e.child = ? AND t.status != 'done'",
            (row["child"],),
        ).fetchone()[0]
        if pending == 0:
            conn.execute(
                "UPDATE tuples SET status = 'todo' WHERE key = ? AND status = 'waiting'",
                (row["child"],),
            )
    return _clean_models(conn, key)


def _clean_models(conn: sqlite3.Connection, key: str) -> list[str]:
    """Delete the parents' models that every consumer has now used (plans with clean_models)."""
    deletable = []
    for edge in conn.execute(
        "SELECT e.parent, e.role, t.compute_plan_id FROM edges e JOIN tuples t ON t.key = e.parent "
        "WHERE e.child = ?",
        (key,),
    ).fetchall():
        plan_id = edge["compute_plan_id"]
        if not plan_id:
            continue
        plan = conn.execute("SELECT body FROM plans WHERE id = ?", (plan_id,)).fetchone()
        if plan is None or not loads(plan["body"]).get("clean_models"):
            continue
        consumers = conn.execute(
            "SELECT SUM(t.status != 'done') AS waiting, SUM(t.kind != 'testtuple') AS trained "
            "FROM edges e JOIN tuples t ON t.key = e.child WHERE e.parent = ? AND e.role = ?",
            (edge["parent"], edge["role"]),
        ).fetchone()
        # an intermediary model: some tuple trained on it, and every consumer is done;
        # a model only tested (a leaf of the training graph) is kept
        if consumers["waiting"] or not consumers["trained"]:
            continue
        model = conn.execute(
            "SELECT hash FROM models WHERE tuple_key = ? AND role = ? AND deleted = 0",
            (edge["parent"], edge["role"]),
        ).fetchone()
        if model is None:
            continue
        conn.execute(
            "UPDATE models SET deleted = 1 WHERE tuple_key = ? AND role = ?",
            (edge["parent"], edge["role"]),
        )
        still_used = conn.execute(
            "SELECT 1 FROM models WHERE hash = ? AND deleted = 0", (model["hash"],)
        ).fetchone()
        if not still_used:
            deletable.append(model["hash"])
    return deletable


def mark_failed(ctx: Context, conn: sqlite3.Connection, key: str, claim: str, log: str) -> bool:
    """Record a failed run and fail the tuples waiting on it; False if no longer ours."""
    cur = conn.execute(
        "UPDATE tuples SET status = 'failed', log = ?, claimed_by = NULL, heartbeat = NULL "
        "WHERE key = ? AND status = 'doing' AND claimed_by = ?",
        (log, key, claim),
    )
    if cur.rowcount == 0:
        return False
    _spread(conn, key, "failed", f"parent tuple {key} failed")
    return True


def release(conn: sqlite3.Connection, key: str, claim: str) -> None:
    """Give a claimed tuple back (the node stops): it will run again."""
    conn.execute(
        "UPDATE tuples SET status = 'todo', claimed_by = NULL, heartbeat = NULL "
        "WHERE key = ? AND status = 'doing' AND claimed_by = ?",
        (key, claim),
    )


def cancel(conn: sqlite3.Connection, keys_: list[str]) -> None:
    """Cancel tuples not finished yet, and whatever waits on them."""
    for key in keys_:
        cur = conn.execute(
            "UPDATE tuples SET status = 'canceled', claimed_by = NULL "
            "WHERE key = ? AND status IN ('waiting', 'todo', 'doing')",
            (key,),
        )
        if cur.rowcount:
            _spread(conn, key, "canceled", f"parent tuple {key} was canceled")


def status_of(conn: sqlite3.Connection, key: str) -> tuple[str, str | None] | None:
    row = conn.execute("SELECT status, claimed_by FROM tuples WHERE key = ?", (key,)).fetchone()
    return (row["status"], row["claimed_by"]) if row else None
