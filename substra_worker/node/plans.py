"""Compute plans: a DAG of tuples named by caller ids, created all at once.

The ids (``traintuple_id``, ``aggregatetuple_id``, ``composite_traintuple_id``) are
unique across the plan, including the ids of earlier updates; references
(``in_models_ids``, ``in_head_model_id``, ``in_trunk_model_id``, a testtuple's
``traintuple_id``) must name one of them. A dangling id, a duplicate id or a cycle
is a ``BadRequest`` and nothing is created. Tuples are created in dependency order
(and otherwise in the order given), each as its ``add_<kind>`` would, with the plan
id in its key; ``IDToKey`` maps the ids to the keys.
"""

from __future__ import annotations

import heapq
from typing import Any

from substra_worker.node import compute, keys
from substra_worker.node.context import Context, check_key, metadata, optional_str
from substra_worker.node.errors import BadRequest, Conflict, NotFound
from substra_worker.node.shapes import Reader
from substra_worker.node.store import dumps, loads

# input list -> (tuple kind, id field, reference fields: (field, is a list))
PLAN_LISTS: tuple[tuple[str, str, str | None, tuple[tuple[str, bool], ...]], ...] = (
    ("traintuples", "traintuple", "traintuple_id", (("in_models_ids", True),)),
    (
        "composite_traintuples",
        "composite_traintuple",
        "composite_traintuple_id",
        (("in_head_model_id", False), ("in_trunk_model_id", False)),
    ),
    ("aggregatetuples", "aggregatetuple", "aggregatetuple_id", (("in_models_ids", True),)),
    ("testtuples", "testtuple", None, (("traintuple_id", False),)),
)


class _Item:
    def __init__(self, index: int, kind: str, ident: str, data: dict, refs: list[str]):
        self.index = index
        self.kind = kind
        self.ident = ident
        self.data = data
        self.refs = refs


def _items(data: dict, known: set[str]) -> list[_Item]:
    """The plan's tuples with their ids and references, checked for duplicates and dangling ids."""
    if not isinstance(data, dict):
        raise BadRequest("the compute plan must be a JSON object")
    items: list[_Item] = []
    ids: set[str] = set()
    for list_name, kind, id_field, ref_fields in PLAN_LISTS:
        entries = data.get(list_name) or []
        if not isinstance(entries, list):
            raise BadRequest(f"{list_name} must be a list")
        for position, entry in enumerate(entries):
            where = f"{list_name}[{position}]"
            if not isinstance(entry, dict):
                raise BadRequest(f"{where} must be an object")
            if id_field:
                ident = entry.get(id_field)
                if not isinstance(ident, str) or not ident:
                    raise BadRequest(f"{where}.{id_field} is required")
                if ident in ids or ident in known:
                    raise BadRequest(f"{where}.{id_field}: the id {ident!r} is used twice")
                ids.add(ident)
            else:
                ident = f"{list_name}[{position}]"
            refs: list[str] = []
            for ref_field, is_list in ref_fields:
                value = entry.get(ref_field)
                if value is None or value == "":
                    continue
                values = value if is_list else [value]
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise BadRequest(
                        f"{where}.{ref_field} must be {'a list of ids' if is_list else 'an id'}"
                    )
                refs.extend(values)
            items.append(_Item(len(items), kind, ident, entry, refs))
    for item in items:
        for ref in item.refs:
            if ref not in ids and ref not in known:
                raise BadRequest(f"{item.ident}: unknown id {ref!r} (not in the compute plan)")
    return items


def _ordered(items: list[_Item], known: set[str]) -> list[_Item]:
    """Dependency order, stable otherwise; ``BadRequest`` naming the ids on a cycle."""
    by_id = {item.ident: item for item in items}
    blockers = {item.ident: {r for r in item.refs if r not in known} for item in items}
    dependents: dict[str, list[str]] = {}
    for ident, refs in blockers.items():
        for ref in refs:
            dependents.setdefault(ref, []).append(ident)
    ready = [(item.index, item.ident) for item in items if not blockers[item.ident]]
    heapq.heapify(ready)
    order = []
    while ready:
        _, ident = heapq.heappop(ready)
        order.append(by_id[ident])
        for child in dependents.get(ident, []):
            blockers[child].discard(ident)
            if not blockers[child]:
                heapq.heappush(ready, (by_id[child].index, child))
    if len(order) != len(items):
        stuck = sorted(i for i, refs in blockers.items() if refs)
        raise BadRequest(f"the compute plan has a cycle among the ids {stuck}")
    return order


def _tuple_input(item: _Item, id_to_key: dict[str, str]) -> dict[str, Any]:
    """The ``add_<kind>`` input dict of a plan item, ids replaced by keys."""
    entry = item.data
    data = {k: v for k, v in entry.items() if not k.endswith("_id") and not k.endswith("_ids")}
    if item.kind in ("traintuple", "aggregatetuple"):
        data["in_models_keys"] = [id_to_key[i] for i in entry.get("in_models_ids") or []]
    elif item.kind == "composite_traintuple":
        for id_field, key_field in (
            ("in_head_model_id", "in_head_model_key"),
            ("in_trunk_model_id", "in_trunk_model_key"),
        ):
            if entry.get(id_field):
                data[key_field] = id_to_key[entry[id_field]]
    else:
        data["traintuple_key"] = id_to_key[entry["traintuple_id"]]
    return data


def _create_tuples(ctx: Context, plan_id: str, data: dict, body: dict) -> None:
    """Create the tuples of ``data`` in plan ``plan_id`` (caller's transaction); update body."""
    conn = ctx.store.conn
    id_to_key: dict[str, str] = body.setdefault("id_to_key", {})
    known = set(id_to_key)
    for item in _ordered(_items(data, known), known):
        spec = compute.build(ctx, item.kind, _tuple_input(item, id_to_key), plan_id=plan_id)
        try:
            compute.insert(ctx, conn, spec)
        except Conflict as e:
            raise BadRequest(
                f"{item.ident}: the same {compute.KIND_LABELS[item.kind]} is already in the plan "
                f"({spec.key})"
            ) from e
        if item.kind != "testtuple":
            id_to_key[item.ident] = spec.key


def add_compute_plan(ctx: Context, data: dict) -> dict:
    """``POST /compute_plan/``: create a plan and its tuples; answer the plan."""
    if not isinstance(data, dict):
        raise BadRequest("the compute plan must be a JSON object")
    clean = data.get("clean_models", False)
    if not isinstance(clean, bool):
        raise BadRequest("clean_models must be a boolean")
    body = {
        "tag": optional_str(data, "tag"),
        "metadata": metadata(data),
        "clean_models": clean,
        "id_to_key": {},
        "canceled": False,
    }
    plan_id = keys.new_compute_plan_id()
    with ctx.store.transaction() as conn:
        seq = ctx.store.next_seq(conn)
        conn.execute(
            "INSERT INTO plans (id, seq, body) VALUES (?, ?, ?)", (plan_id, seq, dumps(body))
        )
        _create_tuples(ctx, plan_id, data, body)
        conn.execute("UPDATE plans SET body = ? WHERE id = ?", (dumps(body), plan_id))
        return get_plan(ctx, plan_id)


def _plan_row(ctx: Context, plan_id: str):
    check_key(plan_id, "compute plan id")
    row = ctx.store.conn.execute("SELECT * FROM plans WHERE id = ?", (plan_id,)).fetchone()
    if row is None:
        raise NotFound(f"no compute plan with id {plan_id}")
    return row


def get_plan(ctx: Context, plan_id: str) -> dict:
    return Reader(ctx).plan(_plan_row(ctx, plan_id))


def update_compute_plan(ctx: Context, plan_id: str, data: dict) -> dict:
    """``POST /compute_plan/<id>/update_ledger/``: add tuples (ids may name earlier ones)."""
    with ctx.store.transaction() as conn:
        row = _plan_row(ctx, plan_id)
        body = loads(row["body"])
        if body.get("canceled"):
            raise BadRequest(f"compute plan {plan_id} is canceled: it cannot be updated")
        _create_tuples(ctx, plan_id, data, body)
        conn.execute("UPDATE plans SET body = ? WHERE id = ?", (dumps(body), plan_id))
        return get_plan(ctx, plan_id)


def cancel_compute_plan(ctx: Context, plan_id: str) -> dict:
    """``POST /compute_plan/<id>/cancel/``: tuples not done yet become ``canceled``.

    Running steps notice it (their runner polls the status) and are killed.
    """
    with ctx.store.transaction() as conn:
        row = _plan_row(ctx, plan_id)
        body = loads(row["body"])
        body["canceled"] = True
        conn.execute("UPDATE plans SET body = ? WHERE id = ?", (dumps(body), plan_id))
        keys_ = [
            r["key"]
            for r in conn.execute(
                "SELECT key FROM tuples WHERE compute_plan_id = ? "
                "AND status IN ('waiting', 'todo', 'doing') ORDER BY seq",
                (plan_id,),
            )
        ]
        compute.cancel(conn, keys_)
        return get_plan(ctx, plan_id)
