"""Table-driven tests of the input schemas: every write operation, every kind of refusal."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from substra_worker import schemas
from substra_worker.sdk.exceptions import InvalidInput, SDKException

from .examples import (
    ALGO,
    DATA_OPERATIONS,
    DATASET,
    NODE,
    OBJECTIVE,
    OPERATIONS,
    PERMISSIONS_AT,
    PLAN,
    SAMPLE_1,
    Case,
    get_at,
    parent_at,
)

MISSING = "Missing data for required field."


def refused(operation: str, payload: Any, *, local: bool = True) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        schemas.validate_call(operation, payload, local=local)
    return info.value


def with_value(case: Case, path: str, value: Any) -> dict:
    payload = case.fresh()
    container, key = parent_at(payload, path)
    container[key] = value
    return payload


def without(case: Case, path: str) -> dict:
    payload = case.fresh()
    container, key = parent_at(payload, path)
    del container[key]
    return payload


def plan(*traintuples: dict, **lists: list) -> dict:
    """A compute plan payload of traintuples (by id and parents) and other lists."""
    items = [
        {
            "traintuple_id": t["id"],
            "algo_key": ALGO,
            "data_manager_key": DATASET,
            "train_data_sample_keys": [SAMPLE_1],
            **({"in_models_ids": t["parents"]} if "parents" in t else {}),
        }
        for t in traintuples
    ]
    return {"traintuples": items, **lists}


# --- the operation table ----------------------------------------------------------------


def test_every_write_operation_has_a_schema_and_its_arguments() -> None:
    assert set(schemas.OPERATIONS) == set(OPERATIONS)
    assert set(schemas.ARGUMENTS) == set(OPERATIONS)
    assert set(schemas.DATA_SCHEMAS) == set(DATA_OPERATIONS)
    assert schemas.ARGUMENTS["add_dataset"] == ("data",)
    assert schemas.ARGUMENTS["update_compute_plan"] == ("compute_plan_id", "data")
    assert schemas.ARGUMENTS["cancel_compute_plan"] == ("compute_plan_id",)
    assert schemas.ARGUMENTS["link_dataset_with_objective"] == ("dataset_key", "objective_key")
    assert schemas.ARGUMENTS["link_dataset_with_data_samples"] == (
        "dataset_key",
        "data_sample_keys",
    )
    for operation in OPERATIONS:
        if operation.startswith("download_"):
            assert schemas.ARGUMENTS[operation] == ("key", "destination_folder")


def test_the_cases_cover_every_operation(cases: dict[str, Case]) -> None:
    assert set(cases) == set(OPERATIONS)


def test_an_unknown_operation_is_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        schemas.validate_call("add_everything", {})
    assert info.value.errors == {"operation": ["Unknown operation 'add_everything'."]}
    with pytest.raises(InvalidInput):
        schemas.validate("add_everything", {})


def test_validate_is_only_for_operations_with_a_data_dict() -> None:
    with pytest.raises(ValueError, match="validate_call"):
        schemas.validate("cancel_compute_plan", {"compute_plan_id": PLAN})


def test_invalid_input_is_one_documented_type(cases: dict[str, Case]) -> None:
    error = refused("add_traintuple", {"data": {}})
    assert isinstance(error, SDKException)
    assert isinstance(error, ValueError)


# --- valid input ------------------------------------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_valid_payload_comes_back_with_exactly_the_given_fields(
    cases: dict[str, Case], operation: str
) -> None:
    case = cases[operation]
    payload = case.fresh()
    assert schemas.validate_call(operation, payload, local=case.local) == case.payload
    # no default and no null is added for what was left out
    minimal = copy.deepcopy(case.minimal)
    assert schemas.validate_call(operation, minimal, local=case.local) == case.minimal


@pytest.mark.parametrize("operation", DATA_OPERATIONS)
def test_the_client_form_validates_the_data_dict(cases: dict[str, Case], operation: str) -> None:
    case = cases[operation]
    data = case.fresh()["data"]
    result = schemas.validate(operation, data, local=case.local)
    assert result == case.payload["data"]
    assert result is not data
    assert schemas.validate(operation, case.minimal["data"]) == case.minimal["data"]


def test_operation_schemas_can_be_loaded_directly(cases: dict[str, Case], tmp_path: Path) -> None:
    assert schemas.OPERATIONS["add_dataset"]().load(cases["add_dataset"].fresh()) == (
        cases["add_dataset"].payload
    )
    server = {"data": {"path": str(tmp_path / "on-the-node"), "data_manager_keys": [DATASET]}}
    assert schemas.OPERATIONS["add_data_sample"](local=False).load(server) == server


def test_path_objects_are_accepted_and_sent_as_strings(cases: dict[str, Case], files: Any) -> None:
    data = cases["add_dataset"].fresh()["data"]
    data["data_opener"] = files.opener
    assert schemas.validate("add_dataset", data)["data_opener"] == str(files.opener)


# --- missing, unknown, wrong types --------------------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS)
def test_each_missing_required_field_is_named(cases: dict[str, Case], operation: str) -> None:
    case = cases[operation]
    assert case.required
    for path in case.required:
        error = refused(operation, without(case, path), local=case.local)
        assert error.errors.get(path) == [MISSING], (path, error.errors)
        assert operation in str(error) and path in str(error)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_an_unknown_field_is_named(cases: dict[str, Case], operation: str) -> None:
    case = cases[operation]
    places = [()]
    if "data" in case.payload:
        places.append(("data",))
    if operation in PERMISSIONS_AT:
        places.append(PERMISSIONS_AT[operation])
    if operation in ("add_compute_plan", "update_compute_plan"):
        places += [("data", "traintuples", 1), ("data", "testtuples", 0)]
    for place in places:
        payload = case.fresh()
        (get_at(payload, place) if place else payload)["colour"] = "blue"
        path = ".".join(map(str, (*place, "colour")))
        error = refused(operation, payload, local=case.local)
        assert error.errors == {path: ["Unknown field."]}, error.errors


WRONG_TYPES = [
    # (operation, path, value): a bool is not an int and an int is not a bool
    ("add_data_sample", "data.test_only", 1),
    ("add_data_sample", "data.test_only", "true"),
    ("add_data_samples", "data.test_only", 0),
    ("add_traintuple", "data.rank", True),
    ("add_traintuple", "data.rank", 1.0),
    ("add_traintuple", "data.rank", "1"),
    ("add_aggregatetuple", "data.rank", False),
    ("add_dataset", "data.permissions.public", 1),
    ("add_dataset", "data.permissions.public", "false"),
    ("add_compute_plan", "data.clean_models", 1),
    # a string where a list is expected, and other non-lists
    ("add_traintuple", "data.train_data_sample_keys", SAMPLE_1),
    ("add_data_samples", "data.paths", "/data/sample"),
    ("add_data_sample", "data.data_manager_keys", DATASET),
    ("add_data_sample", "data.data_manager_keys", {DATASET}),
    ("add_dataset", "data.permissions.authorized_ids", NODE),
    ("add_compute_plan", "data.traintuples", {"traintuple_id": "t1"}),
    ("link_dataset_with_data_samples", "data_sample_keys", SAMPLE_1),
    # strings
    ("add_dataset", "data.name", b"Titanic"),
    ("add_dataset", "data.name", 3),
    ("add_dataset", "data.name", None),
    ("add_aggregatetuple", "data.worker", [NODE]),
    ("add_traintuple", "data.tag", 0),
    ("add_compute_plan", "data.traintuples.0.traintuple_id", 1),
    ("download_algo", "destination_folder", 7),
    ("add_data_sample", "data.path", ["a"]),
    # dicts
    ("add_dataset", "data.permissions", [True, []]),
    ("add_dataset", "data.metadata", [("k", "v")]),
    ("add_dataset", "data.metadata.source", 1),
    ("add_compute_plan", "data.traintuples.0", "t1"),
    ("add_dataset", "data", ["Titanic"]),
    ("update_compute_plan", "data", None),
    # keys
    ("cancel_compute_plan", "compute_plan_id", 1),
    ("add_traintuple", "data.in_models_keys.0", None),
]


@pytest.mark.parametrize("operation, path, value", WRONG_TYPES)
def test_a_wrong_type_is_named(
    cases: dict[str, Case], operation: str, path: str, value: Any
) -> None:
    case = cases[operation]
    error = refused(operation, with_value(case, path, value), local=case.local)
    assert path in error.errors, error.errors
    # a plan tuple whose id is lost also leaves its children pointing at nothing
    for other in set(error.errors) - {path}:
        assert all(m.startswith("Unknown id") for m in error.errors[other]), error.errors


def test_a_negative_rank_is_refused(cases: dict[str, Case]) -> None:
    error = refused("add_traintuple", with_value(cases["add_traintuple"], "data.rank", -1))
    assert list(error.errors) == ["data.rank"]


def test_a_payload_that_is_not_a_dict_is_refused() -> None:
    assert refused("add_dataset", ["data"]).errors == {
        "_schema": ["Invalid input type: expected a dict."]
    }
    with pytest.raises(InvalidInput) as info:
        schemas.validate("add_dataset", "data")
    assert list(info.value.errors) == ["_schema"]


EMPTY = [
    ("add_dataset", "data.name", ""),
    ("add_dataset", "data.type", ""),
    ("add_objective", "data.metrics_name", ""),
    ("add_aggregatetuple", "data.worker", ""),
    ("add_dataset", "data.permissions.authorized_ids.0", ""),
    ("add_compute_plan", "data.traintuples.0.traintuple_id", ""),
    ("add_compute_plan", "data.traintuples.1.in_models_ids.0", ""),
    ("add_compute_plan", "data.testtuples.0.traintuple_id", ""),
    ("add_compute_plan", "data.composite_traintuples.1.in_head_model_id", ""),
    ("add_data_sample", "data.path", ""),
    ("download_dataset", "destination_folder", ""),
    # lists that must hold something
    ("add_traintuple", "data.train_data_sample_keys", []),
    ("add_data_sample", "data.data_manager_keys", []),
    ("add_data_samples", "data.paths", []),
    ("add_aggregatetuple", "data.in_models_keys", []),
    ("link_dataset_with_data_samples", "data_sample_keys", []),
]


@pytest.mark.parametrize("operation, path, value", EMPTY)
def test_an_empty_required_value_is_refused(
    cases: dict[str, Case], operation: str, path: str, value: Any
) -> None:
    case = cases[operation]
    error = refused(operation, with_value(case, path, value), local=case.local)
    assert path in error.errors, error.errors


def test_an_empty_tag_is_fine(cases: dict[str, Case]) -> None:
    payload = with_value(cases["add_testtuple"], "data.tag", "")
    assert schemas.validate_call("add_testtuple", payload)["data"]["tag"] == ""


def test_the_message_names_the_operation_and_every_wrong_field(cases: dict[str, Case]) -> None:
    payload = cases["add_dataset"].fresh()
    payload["data"]["permissions"]["public"] = 1
    payload["data"]["objective_key"] = "nope"
    del payload["data"]["type"]
    payload["data"]["size"] = 3
    error = refused("add_dataset", payload)
    wrong = {"data.permissions.public", "data.objective_key", "data.type", "data.size"}
    assert set(error.errors) == wrong
    assert "add_dataset" in str(error)
    for path in wrong:
        assert path in str(error)


def test_the_input_is_not_modified(cases: dict[str, Case]) -> None:
    payload = cases["add_aggregate_algo"].fresh()
    permissions = payload["data"]["permissions"]
    permissions["authorizedIDs"] = permissions.pop("authorized_ids")
    before = copy.deepcopy(payload)
    schemas.validate_call("add_aggregate_algo", payload)
    assert payload == before


# --- keys -------------------------------------------------------------------------------

KEY_PATHS = [
    ("add_data_sample", "data.data_manager_keys.0"),
    ("add_dataset", "data.objective_key"),
    ("add_objective", "data.test_data_manager_key"),
    ("add_objective", "data.test_data_sample_keys.1"),
    ("add_traintuple", "data.algo_key"),
    ("add_traintuple", "data.data_manager_key"),
    ("add_traintuple", "data.train_data_sample_keys.1"),
    ("add_traintuple", "data.in_models_keys.0"),
    ("add_traintuple", "data.compute_plan_id"),
    ("add_aggregatetuple", "data.in_models_keys.1"),
    ("add_composite_traintuple", "data.in_head_model_key"),
    ("add_composite_traintuple", "data.in_trunk_model_key"),
    ("add_testtuple", "data.objective_key"),
    ("add_testtuple", "data.traintuple_key"),
    ("add_testtuple", "data.test_data_sample_keys.0"),
    ("add_compute_plan", "data.traintuples.0.algo_key"),
    ("add_compute_plan", "data.aggregatetuples.0.algo_key"),
    ("add_compute_plan", "data.composite_traintuples.0.train_data_sample_keys.0"),
    ("add_compute_plan", "data.testtuples.0.test_data_sample_keys.0"),
    ("update_compute_plan", "compute_plan_id"),
    ("cancel_compute_plan", "compute_plan_id"),
    ("link_dataset_with_objective", "dataset_key"),
    ("link_dataset_with_objective", "objective_key"),
    ("link_dataset_with_data_samples", "data_sample_keys.1"),
    ("download_objective", "key"),
]
NOT_KEYS = ["g" * 64, "a" * 63, "a" * 65, " " + "a" * 63, "", "Titanic", "a" * 64 + "\n"]


@pytest.mark.parametrize("operation, path", KEY_PATHS)
def test_a_key_must_be_64_hex_characters(cases: dict[str, Case], operation: str, path: str):
    case = cases[operation]
    for bad in NOT_KEYS:
        error = refused(operation, with_value(case, path, bad), local=case.local)
        assert list(error.errors) == [path], (bad, error.errors)
        assert "64 hexadecimal" in error.errors[path][0]
    upper = with_value(case, path, "ABCDEF0123" * 6 + "abcd")
    assert schemas.validate_call(operation, upper, local=case.local) == upper


def test_worker_and_node_ids_are_not_keys(cases: dict[str, Case]) -> None:
    payload = with_value(cases["add_aggregatetuple"], "data.worker", "MyOrg2MSP")
    assert schemas.validate_call("add_aggregatetuple", payload) == payload


# --- permissions ------------------------------------------------------------------------


@pytest.mark.parametrize("operation", sorted(PERMISSIONS_AT))
def test_both_permission_spellings_are_accepted(cases: dict[str, Case], operation: str) -> None:
    case = cases[operation]
    at = PERMISSIONS_AT[operation]
    payload = case.fresh()
    permissions = get_at(payload, at)
    permissions["authorizedIDs"] = permissions.pop("authorized_ids")
    result = schemas.validate_call(operation, payload, local=case.local)
    # normalised to the spelling the node reads
    assert result == case.payload
    assert "authorizedIDs" not in get_at(result, at)


@pytest.mark.parametrize("operation", sorted(PERMISSIONS_AT))
def test_both_permission_spellings_at_once_are_refused(
    cases: dict[str, Case], operation: str
) -> None:
    case = cases[operation]
    at = PERMISSIONS_AT[operation]
    payload = case.fresh()
    get_at(payload, at)["authorizedIDs"] = [NODE]
    error = refused(operation, payload, local=case.local)
    path = ".".join(map(str, (*at, "authorizedIDs")))
    assert list(error.errors) == [path]
    assert "not both" in error.errors[path][0]


def test_the_other_spelling_is_type_checked_too(cases: dict[str, Case]) -> None:
    payload = cases["add_aggregate_algo"].fresh()
    payload["data"]["permissions"] = {"public": False, "authorizedIDs": [NODE, 2]}
    error = refused("add_aggregate_algo", payload)
    assert list(error.errors) == ["data.permissions.authorizedIDs.1"]


@pytest.mark.parametrize(
    "operation", ["add_composite_traintuple", "add_compute_plan", "update_compute_plan"]
)
def test_output_trunk_models_cannot_be_public(cases: dict[str, Case], operation: str) -> None:
    case = cases[operation]
    at = PERMISSIONS_AT[operation]
    for public in (True, False):
        payload = case.fresh()
        get_at(payload, at)["public"] = public
        error = refused(operation, payload)
        path = ".".join(map(str, (*at, "public")))
        assert list(error.errors) == [path]
        assert "cannot be public" in error.errors[path][0]


# --- paths ------------------------------------------------------------------------------

FILE_FIELDS = [
    ("add_dataset", "data.data_opener"),
    ("add_dataset", "data.description"),
    ("add_objective", "data.metrics"),
    ("add_objective", "data.description"),
    ("add_algo", "data.file"),
    ("add_aggregate_algo", "data.file"),
    ("add_composite_algo", "data.description"),
]


@pytest.mark.parametrize("operation, path", FILE_FIELDS)
def test_files_must_exist(cases: dict[str, Case], files: Any, operation: str, path: str) -> None:
    case = cases[operation]
    error = refused(operation, with_value(case, path, str(files.missing)))
    assert error.errors == {path: [f"No such file: {str(files.missing)!r}."]}
    error = refused(operation, with_value(case, path, str(files.folder)))
    assert error.errors == {path: [f"Not a file: {str(files.folder)!r}."]}
    # files are uploaded whatever local says
    assert refused(operation, with_value(case, path, str(files.missing)), local=False)


def test_a_sample_folder_must_exist_locally(cases: dict[str, Case], files: Any) -> None:
    case = cases["add_data_sample"]
    error = refused("add_data_sample", with_value(case, "data.path", str(files.missing)))
    assert error.errors == {"data.path": [f"No such directory: {str(files.missing)!r}."]}
    error = refused("add_data_sample", with_value(case, "data.path", str(files.opener)))
    assert error.errors == {"data.path": [f"Not a directory: {str(files.opener)!r}."]}


def test_server_paths_are_not_looked_up(cases: dict[str, Case], files: Any) -> None:
    one = with_value(cases["add_data_sample"], "data.path", "/srv/data/sample-1")
    assert schemas.validate_call("add_data_sample", one, local=False) == one
    many = with_value(cases["add_data_samples"], "data.paths", ["relative/a", "/srv/b"])
    assert schemas.validate_call("add_data_samples", many, local=False) == many
    data = many["data"]
    assert schemas.validate("add_data_samples", data, local=False) == data
    # but a local check would refuse them
    error = refused("add_data_samples", many)
    assert set(error.errors) == {"data.paths.0", "data.paths.1"}


def test_only_the_missing_folder_of_many_is_named(cases: dict[str, Case], files: Any) -> None:
    paths = [str(s) for s in files.samples]
    paths.insert(2, str(files.missing))
    error = refused("add_data_samples", with_value(cases["add_data_samples"], "data.paths", paths))
    assert list(error.errors) == ["data.paths.2"]


def test_a_folder_given_twice_is_refused(cases: dict[str, Case], files: Any) -> None:
    first = str(files.samples[0])
    for again in (first, first + "/", str(files.samples[0] / ".." / files.samples[0].name)):
        paths = [first, str(files.samples[1]), again]
        payload = with_value(cases["add_data_samples"], "data.paths", paths)
        error = refused("add_data_samples", payload)
        assert list(error.errors) == ["data.paths.2"], again
        assert "Duplicate of paths.0" in error.errors["data.paths.2"][0]
    server = with_value(cases["add_data_samples"], "data.paths", ["/srv/a", "/srv/b", "/srv/a/"])
    assert list(refused("add_data_samples", server, local=False).errors) == ["data.paths.2"]


def test_multiple_is_for_server_folders_only(cases: dict[str, Case]) -> None:
    payload = cases["add_data_samples"].fresh()
    payload["data"]["multiple"] = True
    assert schemas.validate_call("add_data_samples", payload, local=False) == payload
    assert list(refused("add_data_samples", payload).errors) == ["data.multiple"]
    payload["data"]["multiple"] = 1
    assert list(refused("add_data_samples", payload, local=False).errors) == ["data.multiple"]


def test_add_data_sample_takes_one_path(cases: dict[str, Case], files: Any) -> None:
    payload = cases["add_data_sample"].fresh()
    payload["data"]["paths"] = [str(files.samples[1])]
    assert refused("add_data_sample", payload).errors == {"data.paths": ["Unknown field."]}


# --- conditional fields -------------------------------------------------------------------

PAIRS = [
    ("add_composite_traintuple", "data.in_head_model_key", "data.in_trunk_model_key"),
    ("add_testtuple", "data.data_manager_key", "data.test_data_sample_keys"),
    ("add_objective", "data.test_data_manager_key", "data.test_data_sample_keys"),
    (
        "add_compute_plan",
        "data.composite_traintuples.1.in_head_model_id",
        "data.composite_traintuples.1.in_trunk_model_id",
    ),
    (
        "add_compute_plan",
        "data.testtuples.0.data_manager_key",
        "data.testtuples.0.test_data_sample_keys",
    ),
]


@pytest.mark.parametrize("operation, first, second", PAIRS)
def test_fields_that_go_together(
    cases: dict[str, Case], operation: str, first: str, second: str
) -> None:
    case = cases[operation]
    for given, dropped in ((first, second), (second, first)):
        error = refused(operation, without(case, dropped))
        assert list(error.errors) == [dropped]
        assert given.rsplit(".", 1)[1] in error.errors[dropped][0]
    both_gone = without(case, first)
    container, key = parent_at(both_gone, second)
    del container[key]
    assert schemas.validate_call(operation, both_gone) == both_gone


# --- compute plans ------------------------------------------------------------------------


def test_in_plan_references_must_name_tuples_of_the_plan() -> None:
    data = plan({"id": "t1"}, {"id": "t2", "parents": ["t1", "t0"]})
    data["testtuples"] = [{"objective_key": OBJECTIVE, "traintuple_id": "t9"}]
    error = refused("add_compute_plan", {"data": data})
    assert set(error.errors) == {
        "data.traintuples.1.in_models_ids.1",
        "data.testtuples.0.traintuple_id",
    }
    assert "'t0'" in error.errors["data.traintuples.1.in_models_ids.1"][0]
    # an update may refer to tuples already in the plan
    update = {"compute_plan_id": PLAN, "data": data}
    assert schemas.validate_call("update_compute_plan", update) == update
    assert schemas.validate("update_compute_plan", data) == data


def test_head_models_come_from_composite_traintuples(cases: dict[str, Case]) -> None:
    case = cases["add_compute_plan"]
    path = "data.composite_traintuples.1.in_head_model_id"
    error = refused("add_compute_plan", with_value(case, path, "t1"))
    assert list(error.errors) == [path]
    assert "composite traintuple" in error.errors[path][0]
    trunk = "data.composite_traintuples.1.in_trunk_model_id"
    assert list(refused("add_compute_plan", with_value(case, trunk, "nope")).errors) == [trunk]
    # a testtuple cannot be a parent: it has no id, so "t2" of a testtuple is a traintuple
    assert schemas.validate_call("add_compute_plan", with_value(case, trunk, "t2"))


@pytest.mark.parametrize("operation", ["add_compute_plan", "update_compute_plan"])
def test_ids_are_unique_within_the_plan(cases: dict[str, Case], operation: str) -> None:
    case = cases[operation]
    path = "data.aggregatetuples.0.aggregatetuple_id"
    error = refused(operation, with_value(case, path, "t1"))
    assert path in error.errors
    assert "Duplicate id 't1'" in error.errors[path][0]
    assert "traintuples.0" in error.errors[path][0]


def test_a_cycle_is_refused() -> None:
    data = plan(
        {"id": "a", "parents": ["c"]}, {"id": "b", "parents": ["a"]}, {"id": "c", "parents": ["b"]}
    )
    error = refused("add_compute_plan", {"data": data})
    assert len(error.errors) == 1
    [(path, [message])] = error.errors.items()
    assert path.startswith("data.traintuples.") and ".in_models_ids.0" in path
    assert message.startswith("Cycle:") and "'a'" in message and "'c'" in message
    self_loop = plan({"id": "a", "parents": ["a"]})
    assert list(refused("add_compute_plan", {"data": self_loop}).errors) == [
        "data.traintuples.0.in_models_ids.0"
    ]


def test_a_long_chain_is_accepted() -> None:
    chain = [{"id": "t0"}] + [{"id": f"t{i}", "parents": [f"t{i - 1}"]} for i in range(1, 3000)]
    data = plan(*chain)
    assert schemas.validate("add_compute_plan", data) == data
    chain[0]["parents"] = ["t2999"]
    error = refused("add_compute_plan", {"data": plan(*chain)})
    assert len(error.errors) == 1


def test_an_empty_plan_is_a_plan() -> None:
    assert schemas.validate("add_compute_plan", {}) == {}
    assert schemas.validate("add_compute_plan", {"traintuples": []}) == {"traintuples": []}


def test_plan_options_are_not_part_of_an_update(cases: dict[str, Case]) -> None:
    payload = cases["update_compute_plan"].fresh()
    payload["data"]["clean_models"] = True
    assert refused("update_compute_plan", payload).errors == {
        "data.clean_models": ["Unknown field."]
    }


# --- the Client validates before sending --------------------------------------------------


def test_the_client_refuses_bad_input_before_any_request(cases: dict[str, Case]) -> None:
    from substra_worker.sdk import Client

    # nothing listens on this port: a request would be a ConnectionError
    client = Client(url="http://127.0.0.1:9", token="t", retry_timeout=0)
    data = cases["add_traintuple"].fresh()["data"]
    data["rank"] = True
    with pytest.raises(InvalidInput) as info:
        client.add_traintuple(data)
    assert list(info.value.errors) == ["rank"]
    client.close()
