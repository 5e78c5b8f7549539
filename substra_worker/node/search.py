"""List filters: ``asset:field:value`` items, ANDed within a group, groups ORed.

The answer is a list of lists, one per OR group (``[[...all...]]`` without filter), as
the real node answers. Fields are the camelCase fields of the GET shapes, matched so:

- a dotted field walks into objects: ``compute_plan:metadata.job:42``,
  ``traintuple:dataset.openerHash:<key>``;
- a plain value (string, number, boolean) matches its text (``true``/``false`` for
  booleans): ``traintuple:status:done``, ``testtuple:rank:0``;
- a list matches when it holds the value: ``dataset:trainDataSampleKeys:<key>``;
- an object matches when one of its values does: ``traintuple:algo:<algo name or key>``,
  ``objective:metrics:<metrics name>``, ``compute_plan:metadata:<any metadata value>``;
- an unknown field matches nothing (as on the real node).

The filter's asset is the listed asset (public or server name), or, as the real node
allows, another asset related to it; then the listed items are those related to a
matching one:

================================= ======================================================
listed asset                      other filter assets
================================= ======================================================
algo, aggregate/composite algo    the other algo kinds: same fields, same list
dataset                           objective (datasets linked to matching objectives)
objective                         dataset (objectives linked to or testing on them)
traintuple, aggregatetuple,       algo kinds (tuples of matching algos), dataset,
composite traintuple, testtuple   compute_plan; testtuple also objective and the three
                                  trained tuple kinds (testtuples of matching tuples)
compute_plan                      the four tuple kinds (plans holding matching tuples)
================================= ======================================================

Anything else (including the real node's ``model`` filters) is a ``BadRequest``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from substra_worker.node.errors import BadRequest
from substra_worker.sdk import assets
from substra_worker.sdk.filters import parse_search

ALGO_SERVERS = ("algo", "aggregate_algo", "composite_algo")
TUPLE_SERVERS = ("traintuple", "aggregatetuple", "composite_traintuple", "testtuple")

# (listed server asset, filter server asset) -> the listed item's related keys
_RELATIONS: dict[tuple[str, str], Callable[[dict], list[str]]] = {
    ("data_manager", "objective"): lambda d: [d.get("objectiveKey") or ""],
    ("testtuple", "objective"): lambda t: [t["objective"]["hash"]],
}
for _tuple in TUPLE_SERVERS:
    for _algo in ALGO_SERVERS:
        _RELATIONS[(_tuple, _algo)] = lambda t: [t["algo"]["hash"]]
    _RELATIONS[(_tuple, "data_manager")] = lambda t: [
        (t.get("dataset") or {}).get("openerHash", "")
    ]
    _RELATIONS[(_tuple, "compute_plan")] = lambda t: [t.get("computePlanID") or ""]
for _trained in ("traintuple", "aggregatetuple", "composite_traintuple"):
    _RELATIONS[("testtuple", _trained)] = lambda t: [t["traintupleKey"]]
_PLAN_FIELDS = {
    "traintuple": "traintupleKeys",
    "aggregatetuple": "aggregatetupleKeys",
    "composite_traintuple": "compositeTraintupleKeys",
    "testtuple": "testtupleKeys",
}
for _tuple, _field in _PLAN_FIELDS.items():
    _RELATIONS[("compute_plan", _tuple)] = lambda p, _f=_field: list(p[_f])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _resolve(item: Any, field: str) -> Any:
    for part in field.split("."):
        if not isinstance(item, dict) or part not in item:
            return None
        item = item[part]
    return item


def matches(item: dict, field: str, value: str) -> bool:
    """Whether ``item``'s ``field`` matches ``value`` (see the module docstring)."""
    found = _resolve(item, field)
    if found is None:
        return False
    if isinstance(found, list):
        return any(_text(v) == value for v in found if not isinstance(v, dict | list))
    if isinstance(found, dict):
        return any(
            _text(v) == value
            for v in found.values()
            if v is not None and not isinstance(v, dict | list)
        )
    return _text(found) == value


def _server_name(prefix: str) -> str:
    try:
        return assets.get(prefix).server
    except ValueError as e:
        raise BadRequest(f"Malformed search filters: unknown asset {prefix!r}") from e


def _same_nature(a: str, b: str) -> bool:
    return a == b or {a, b} <= set(ALGO_SERVERS)


def filter_groups(
    server: str,
    items: list[dict],
    search: str | None,
    load: Callable[[str], list[dict]],
) -> list[list[dict]]:
    """``items`` (all the listed assets' shapes) split into the groups ``search`` selects.

    ``load(server_name)`` gives all shapes of another asset, for cross-asset filters.
    """
    try:
        groups = parse_search(search)
    except ValueError as e:
        raise BadRequest(f"Malformed search filters: {e}") from e
    if not groups:
        return [items]
    answer = []
    for group in groups:
        selected = items
        for prefix, field, value in group:
            other = _server_name(prefix)
            if _same_nature(other, server):
                selected = [i for i in selected if matches(i, field, value)]
                continue
            if server == "objective" and other == "data_manager":
                datasets = [d for d in load(other) if matches(d, field, value)]
                linked = {d["objectiveKey"] for d in datasets if d.get("objectiveKey")}
                keys = {d["key"] for d in datasets}
                selected = [
                    o
                    for o in selected
                    if o["key"] in linked
                    or (o.get("testDataset") and o["testDataset"]["dataManagerKey"] in keys)
                ]
                continue
            relation = _RELATIONS.get((server, other))
            if relation is None:
                raise BadRequest(
                    f"Malformed search filters: not authorized filter key {prefix!r} "
                    f"for asset {assets.get(server).name!r}"
                )
            id_field = "computePlanID" if other == "compute_plan" else "key"
            keys = {o[id_field] for o in load(other) if matches(o, field, value)}
            selected = [i for i in selected if any(k in keys for k in relation(i) if k)]
        answer.append(selected)
    return answer
