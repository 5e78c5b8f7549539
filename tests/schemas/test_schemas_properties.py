"""Property tests: any malformed payload of any operation is refused, naming the field.

From each operation's valid example, hypothesis draws one mutation (drop a
required field, add an unknown field, give a value of another type) and checks
that ``validate_call`` raises ``InvalidInput`` whose errors and message name the
mutated field.
"""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from substra_worker import schemas
from substra_worker.sdk.exceptions import InvalidInput

from .examples import OPERATIONS, Case, get_at, json_type, parent_at

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# one strategy per JSON type; a replacement is always of another type than the original
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "str": st.text(max_size=6),
    "int": st.integers(min_value=-3, max_value=10**9),
    "bool": st.booleans(),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "null": st.none(),
    "list": st.lists(st.integers(), max_size=2),
    "dict": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
}


def all_paths(node: Any, prefix: str = "") -> list[str]:
    """Every dotted path below ``node`` (the node itself excluded)."""
    if isinstance(node, dict):
        children = node.items()
    elif isinstance(node, list):
        children = enumerate(node)
    else:
        return []
    out = []
    for key, value in children:
        path = f"{prefix}.{key}" if prefix else str(key)
        out += [path, *all_paths(value, path)]
    return out


def schema_dicts(payload: dict) -> list[str]:
    """Paths of the dicts whose fields a schema fixes ("" is the payload itself)."""
    paths = [""] + [p for p in all_paths(payload) if isinstance(get_at(payload, p), dict)]
    return [p for p in paths if not p.endswith("metadata")]


def check_refused(case: Case, operation: str, payload: dict, path: str) -> None:
    with pytest.raises(InvalidInput) as info:
        schemas.validate_call(operation, payload, local=case.local)
    error = info.value
    assert path in error.errors, (path, error.errors)
    assert operation in str(error) and path in str(error)


@pytest.mark.parametrize("operation", OPERATIONS)
@SETTINGS
@given(data=st.data())
def test_a_dropped_required_field_is_named(cases: dict, operation: str, data: Any) -> None:
    case = cases[operation]
    path = data.draw(st.sampled_from(case.required), label="dropped")
    payload = case.fresh()
    container, key = parent_at(payload, path)
    del container[key]
    check_refused(case, operation, payload, path)


@pytest.mark.parametrize("operation", OPERATIONS)
@SETTINGS
@given(data=st.data())
def test_an_added_unknown_field_is_named(cases: dict, operation: str, data: Any) -> None:
    case = cases[operation]
    payload = case.fresh()
    place = data.draw(st.sampled_from(schema_dicts(payload)), label="in")
    name = "x_" + data.draw(st.text(string.ascii_letters + string.digits + "_", max_size=8))
    value = data.draw(st.one_of(*VALUES.values()), label="value")
    (get_at(payload, place) if place else payload)[name] = value
    check_refused(case, operation, payload, f"{place}.{name}" if place else name)


@pytest.mark.parametrize("operation", OPERATIONS)
@SETTINGS
@given(data=st.data())
def test_a_value_of_another_type_is_named(cases: dict, operation: str, data: Any) -> None:
    case = cases[operation]
    payload = case.fresh()
    path = data.draw(st.sampled_from(all_paths(payload)), label="replaced")
    other = [t for t in VALUES if t != json_type(get_at(payload, path))]
    value = data.draw(st.sampled_from(other).flatmap(VALUES.__getitem__), label="value")
    container, key = parent_at(payload, path)
    container[key] = value
    check_refused(case, operation, payload, path)


@pytest.mark.parametrize("operation", OPERATIONS)
@SETTINGS
@given(data=st.data())
def test_several_mutations_are_all_named(cases: dict, operation: str, data: Any) -> None:
    case = cases[operation]
    payload = case.fresh()
    # one unknown field at the top, and a value of another type under it elsewhere
    leaves = [p for p in all_paths(payload) if not isinstance(get_at(payload, p), dict | list)]
    path = data.draw(st.sampled_from(leaves), label="replaced")
    other = [t for t in VALUES if t != json_type(get_at(payload, path))]
    container, key = parent_at(payload, path)
    container[key] = data.draw(st.sampled_from(other).flatmap(VALUES.__getitem__))
    payload["x_unknown"] = 1
    with pytest.raises(InvalidInput) as info:
        schemas.validate_call(operation, payload, local=case.local)
    assert {path, "x_unknown"} <= set(info.value.errors), info.value.errors


@pytest.mark.parametrize("operation", OPERATIONS)
@SETTINGS
@given(data=st.data())
def test_free_text_stays_as_given(cases: dict, operation: str, data: Any) -> None:
    """Tags and metadata take any strings and come back unchanged."""
    case = cases[operation]
    payload = case.fresh()
    free = [p for p in all_paths(payload) if p.endswith((".tag", ".metadata"))]
    for path in free:
        container, key = parent_at(payload, path)
        if key == "tag":
            container[key] = data.draw(st.text(max_size=20))
        else:
            container[key] = data.draw(st.dictionaries(st.text(), st.text(), max_size=3))
    assert schemas.validate_call(operation, payload, local=case.local) == payload
