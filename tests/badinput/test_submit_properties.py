"""Property tests at the ``Submitter``: any malformed payload of any operation is refused
at submit with an error naming the field, and nothing is queued or recorded.

The valid examples come from the schema tests (``tests/schemas/examples.py``);
hypothesis draws one mutation of one of them (drop a required field, add an
unknown one, put a value of another JSON type somewhere), submits it through
a real ``Submitter`` on a real Redis, and checks the refusal and that Redis is
exactly as it was (every key, and the broker queue).
"""

from __future__ import annotations

import copy
import string
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from substra_worker.envelope import OPERATIONS
from substra_worker.sdk.exceptions import InvalidInput
from substra_worker.settings import Settings
from substra_worker.submitter import Submitter
from substra_worker.tasks.app import QUEUE
from tests.schemas.examples import Files, build_cases, get_at, json_type, parent_at

pytestmark = pytest.mark.timeout(300)

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "str": st.text(alphabet=string.printable, max_size=6),
    "int": st.integers(min_value=-3, max_value=10**9),
    "bool": st.booleans(),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "null": st.none(),
    "list": st.lists(st.integers(), max_size=2),
    "dict": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    files = Files(tmp_path_factory.mktemp("inputs"))
    files.create()
    return build_cases(files)


@pytest.fixture(scope="module")
def producer(redis_server, tmp_path_factory):
    settings_ = Settings(redis_url=redis_server.url, state_dir=tmp_path_factory.mktemp("state"))
    with Submitter(settings_) as s:
        yield s


@pytest.fixture(scope="module")
def rclient(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


def submission(operation: str, call: dict[str, Any]) -> dict[str, Any]:
    """A schema example (the Client call's arguments) as the Submitter takes it."""
    op = OPERATIONS[operation]
    if op.data_dict:
        return call["data"]
    return dict(call)


def error_path(operation: str, path: str) -> str:
    """Where the Submitter names a field that the schema example holds at ``path``."""
    if OPERATIONS[operation].data_dict:
        path = path.removeprefix("data.")
    return f"payload.{path}"


def paths(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        children = node.items()
    elif isinstance(node, list):
        children = enumerate(node)
    else:
        return []
    out = []
    for key, value in children:
        path = f"{prefix}.{key}" if prefix else str(key)
        out += [path, *paths(value, path)]
    return out


def mutable_paths(operation: str, call: dict[str, Any]) -> list[str]:
    # the whole "data" dict is the Submitter's payload itself: its type is the
    # envelope's business (tested below)
    return [p for p in paths(call) if p != "data" and not p.endswith(".metadata")]


def refuse(producer: Submitter, rclient, tally, operation: str, call: dict, local: bool):
    before = sorted(rclient.scan_iter(count=1000))
    with pytest.raises(InvalidInput) as info:
        producer.submit(operation, submission(operation, call), local=local)
    assert sorted(rclient.scan_iter(count=1000)) == before, "something was recorded"
    assert rclient.llen(QUEUE) == 0, "something was queued"
    tally.add("submit: malformed payloads", True)
    return info.value


def assert_named(error: InvalidInput, expected: str, operation: str) -> None:
    named = set(error.errors)
    # the field, or the field that holds it (a wrong list item names the list)
    assert any(expected == n or expected.startswith(n + ".") for n in named), (
        expected,
        error.errors,
    )
    assert any(n in str(error) for n in named), (str(error), operation)


OPS = sorted(OPERATIONS)


@pytest.mark.parametrize("operation", OPS)
@SETTINGS
@given(data=st.data())
def test_a_dropped_required_field_is_refused_and_named(
    producer, rclient, tally, cases, operation, data
):
    case = cases[operation]
    required = [p for p in case.required if p != "data"]
    path = data.draw(st.sampled_from(required), label="dropped")
    call = copy.deepcopy(case.payload)
    container, key = parent_at(call, path)
    del container[key]
    error = refuse(producer, rclient, tally, operation, call, case.local)
    assert_named(error, error_path(operation, path), operation)


@pytest.mark.parametrize("operation", OPS)
@SETTINGS
@given(data=st.data())
def test_an_unknown_field_is_refused_and_named(producer, rclient, tally, cases, operation, data):
    case = cases[operation]
    call = copy.deepcopy(case.payload)
    dicts = [""] + [
        p for p in paths(call) if isinstance(get_at(call, p), dict) and not p.endswith("metadata")
    ]
    if OPERATIONS[operation].data_dict:
        dicts = [p for p in dicts if p]  # the payload is call["data"]
    place = data.draw(st.sampled_from(dicts), label="in")
    name = "x_" + data.draw(st.text(string.ascii_letters + string.digits + "_", max_size=8))
    value = data.draw(st.one_of(*VALUES.values()), label="value")
    (get_at(call, place) if place else call)[name] = value
    error = refuse(producer, rclient, tally, operation, call, case.local)
    assert_named(error, error_path(operation, f"{place}.{name}" if place else name), operation)


@pytest.mark.parametrize("operation", OPS)
@SETTINGS
@given(data=st.data())
def test_a_value_of_another_type_is_refused_and_named(
    producer, rclient, tally, cases, operation, data
):
    case = cases[operation]
    call = copy.deepcopy(case.payload)
    path = data.draw(st.sampled_from(mutable_paths(operation, call)), label="replaced")
    other = [t for t in VALUES if t != json_type(get_at(call, path))]
    value = data.draw(st.sampled_from(other).flatmap(VALUES.__getitem__), label="value")
    if isinstance(value, str) and value.startswith("$job:"):
        value = "x" + value  # a reference string is another test's business
    container, key = parent_at(call, path)
    container[key] = value
    error = refuse(producer, rclient, tally, operation, call, case.local)
    assert_named(error, error_path(operation, path), operation)


# --- the envelope around the payload --------------------------------------------------------

ENVELOPE_CASES = {
    "token smuggled in": ({"token": "s3cret"}, "token"),
    "node URL smuggled in": ({"node_url": "http://evil"}, "node_url"),
    "unknown operation": ({"operation": "delete_everything"}, "operation"),
    "payload not a dict": ({"payload": ["x"]}, "payload"),
    "options unknown": ({"options": {"exist_ok": False, "sudo": True}}, "options.sudo"),
    "exist_ok not a bool": ({"options": {"exist_ok": "maybe"}}, "options.exist_ok"),
    "exist_ok not taken": ({"operation": "cancel_compute_plan", "options": {"exist_ok": True},
                            "payload": {"compute_plan_id": "c9" * 32}}, "options"),
    "follow not followable": ({"operation": "add_dataset", "follow": True}, "follow"),
    "target with a slash": ({"target": "../etc"}, "target"),
    "malformed reference": ({"payload_patch": {"name": "$job:nothex"}}, "payload"),
    "reference to no job": ({"references": ["0" * 32]}, "references"),
    "bad job id": ({"id": "../../x"}, "id"),
    "idempotency key too long": ({"idempotency_key": "k" * 1000}, "idempotency_key"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ENVELOPE_CASES))
def test_a_malformed_envelope_is_refused_and_named(producer, rclient, tally, cases, name):
    change, field = ENVELOPE_CASES[name]
    envelope = {
        "operation": "add_dataset",
        "payload": copy.deepcopy(cases["add_dataset"].payload["data"]),
    }
    change = copy.deepcopy(change)
    envelope["payload"].update(change.pop("payload_patch", {}))
    envelope.update(change)
    before = sorted(rclient.scan_iter(count=1000))
    with pytest.raises(InvalidInput) as info:
        producer.submit_envelope(envelope)
    assert sorted(rclient.scan_iter(count=1000)) == before
    assert rclient.llen(QUEUE) == 0
    named = set(info.value.errors)
    assert any(field == n or field.startswith(n + ".") for n in named), (field, named)
    tally.add("submit: malformed envelopes", True)
