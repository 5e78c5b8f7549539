"""The input dicts of the reference document, as marshmallow schemas.

One schema per ``data`` dict of a Client write method, and one schema per
operation for the whole call (``{argument name: value}``), which is what a job
payload holds. Both the Client (before any request) and the job queue (before
anything is queued) validate with them, so bad input is refused in one place
with an error that names every wrong field.

Validation is strict on purpose: unknown fields, missing required fields, a bool
given as an int (or the reverse), a string where a list is expected and empty
required strings are refused. The dict returned carries exactly the fields the
caller gave (no defaults, no nulls: real nodes misread anything else); the only
rewrite is ``authorizedIDs`` -> ``authorized_ids`` in permissions (both
spellings appear in the reference document).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validates_schema,
)
from marshmallow import validate as validators

from substra_worker.sdk.exceptions import InvalidInput

__all__ = [
    "ARGUMENTS",
    "DATA_SCHEMAS",
    "OPERATIONS",
    "validate",
    "validate_call",
]

_KEY_RE = re.compile(r"[0-9a-fA-F]{64}")
_MISSING = "Missing data for required field."
_NOT_EMPTY = "Must not be empty."


# --- fields -----------------------------------------------------------------------------


class Text(fields.Field):
    """A ``str`` (never bytes); empty only when ``allow_empty``."""

    default_error_messages = {"invalid": "Not a valid string.", "empty": _NOT_EMPTY}

    def __init__(self, *, allow_empty: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.allow_empty = allow_empty

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if not value and not self.allow_empty:
            raise self.make_error("empty")
        return value


class Key(fields.Field):
    """An asset key: 64 hexadecimal characters (a sha256, or a compute plan id)."""

    default_error_messages = {
        "invalid": "Not a valid string.",
        "key": "Not a valid key: expected 64 hexadecimal characters.",
    }

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if not _KEY_RE.fullmatch(value):
            raise self.make_error("key")
        return value


class StrictBool(fields.Field):
    """``True`` or ``False`` only: marshmallow's Boolean takes 1, "yes", "true"."""

    default_error_messages = {"invalid": "Not a valid boolean."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictInt(fields.Field):
    """An ``int`` that is not a ``bool`` (marshmallow's strict Integer takes ``True``)."""

    default_error_messages = {"invalid": "Not a valid integer."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return value


class List(fields.List):
    """A list (or tuple): marshmallow's List also takes sets and other iterables."""

    default_error_messages = {"invalid": "Not a valid list.", "empty": _NOT_EMPTY}

    def __init__(self, inner: Any, *, non_empty: bool = False, **kwargs: Any):
        super().__init__(inner, **kwargs)
        self.non_empty = non_empty

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list:
        if not isinstance(value, (list, tuple)):
            raise self.make_error("invalid")
        if self.non_empty and not value:
            raise self.make_error("empty")
        return super()._deserialize(value, attr, data, **kwargs)


class Metadata(fields.Field):
    """``dict[str, str]``: the ledger of that generation stores metadata as string pairs."""

    default_error_messages = {"invalid": "Not a valid mapping type."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict:
        if not isinstance(value, Mapping):
            raise self.make_error("invalid")
        errors: dict[str, list[str]] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                errors[str(k)] = ["Not a valid key: metadata keys are strings."]
            elif not isinstance(v, str):
                errors[k] = ["Not a valid string: metadata values are strings."]
        if errors:
            raise ValidationError(errors)
        return dict(value)


class PathText(fields.Field):
    """A non-empty path, as ``str`` or ``os.PathLike`` (returned as ``str``)."""

    default_error_messages = {"invalid": "Not a valid path string.", "empty": _NOT_EMPTY}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        path = _as_path(value)
        if path is None:
            raise self.make_error("invalid")
        if not path:
            raise self.make_error("empty")
        return path


class ExistingFile(PathText):
    """A local file that is read and uploaded (opener, description, archive)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        path = super()._deserialize(value, attr, data, **kwargs)
        if not os.path.exists(path):
            raise ValidationError(f"No such file: {path!r}.")
        if not os.path.isfile(path):
            raise ValidationError(f"Not a file: {path!r}.")
        return path


class Refused(fields.Field):
    """A field that is known but never allowed, with a message saying why."""

    def __init__(self, message: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.message = message

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        raise ValidationError(self.message)


class Data(fields.Field):
    """The ``data`` argument of a call: loaded with its schema and the call's ``local``."""

    default_error_messages = {"invalid": "Invalid input type: expected a dict."}

    def __init__(self, data_schema: type[InputSchema], **kwargs: Any):
        super().__init__(**kwargs)
        self.data_schema = data_schema

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict:
        if not isinstance(value, Mapping):
            raise self.make_error("invalid")
        local = getattr(self.parent, "local", True)
        try:
            return self.data_schema(local=local).load(value)
        except ValidationError as e:
            raise ValidationError(e.messages) from e


def _as_path(value: Any) -> str | None:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return value if isinstance(value, str) else None


def _key_list(**kwargs: Any) -> List:
    return List(Key(), **kwargs)


# --- schemas ----------------------------------------------------------------------------


class InputSchema(Schema):
    """Base of every input schema: unknown fields refused; ``local`` as the Client's."""

    class Meta:
        unknown = RAISE

    def __init__(self, *args: Any, local: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.local = local


def _put(errors: dict, path: tuple, message: str) -> None:
    """Add ``message`` at ``path`` in a marshmallow-shaped nested errors dict."""
    node = errors
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node.setdefault(path[-1], []).append(message)


def _both_or_neither(original: Any, first: str, second: str) -> dict:
    errors: dict = {}
    if isinstance(original, Mapping) and (first in original) != (second in original):
        given, missing = (first, second) if first in original else (second, first)
        _put(errors, (missing,), f"Required when {given} is given.")
    return errors


def _together(first: str, second: str) -> Any:
    """A schema check: ``first`` and ``second`` are given together or not at all."""

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def check(self: Schema, data: dict, original: Any, **kwargs: Any) -> None:
        errors = _both_or_neither(original, first, second)
        if errors:
            raise ValidationError(errors)

    return check


class _Tagged(InputSchema):
    tag = Text(allow_empty=True)
    metadata = Metadata()


class PermissionsSchema(InputSchema):
    """``{"public": bool, "authorized_ids": list[str]}`` (or ``authorizedIDs``)."""

    public = StrictBool(required=True)
    authorized_ids = List(Text())
    authorizedIDs = List(Text())  # noqa: N815 - the reference document's spelling

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _one_spelling(self, data: dict, original: Any, **kwargs: Any) -> None:
        if not isinstance(original, Mapping):
            return
        if "authorized_ids" in original and "authorizedIDs" in original:
            raise ValidationError(
                "Give either authorized_ids or authorizedIDs, not both.", "authorizedIDs"
            )
        if "authorized_ids" not in original and "authorizedIDs" not in original:
            raise ValidationError(_MISSING, "authorized_ids")

    @post_load
    def _normalise(self, data: dict, **kwargs: Any) -> dict:
        if "authorizedIDs" in data:
            data["authorized_ids"] = data.pop("authorizedIDs")
        return data


class TrunkPermissionsSchema(PermissionsSchema):
    """Permissions of an output trunk model: ``authorized_ids`` only, never public."""

    public = Refused("Output trunk models cannot be public: give only authorized_ids.")


class _DataSampleBase(InputSchema):
    data_manager_keys = _key_list(required=True, non_empty=True)
    test_only = StrictBool()
    # local=False only: each path is a parent folder whose sub-folders are samples.
    multiple = StrictBool()

    def _check_folders(self, original: Any, name: str) -> dict:
        """Folders exist locally (local=True) and are not given twice."""
        errors: dict = {}
        if not isinstance(original, Mapping):
            return errors
        if "multiple" in original and self.local:
            _put(errors, ("multiple",), "Only with local=False (folders on the node).")
        value = original.get(name)
        if name == "path":
            items = [((name,), value)]
        elif isinstance(value, (list, tuple)):
            items = [((name, i), v) for i, v in enumerate(value)]
        else:
            items = []
        seen: dict[str, Any] = {}
        for path, raw in items:
            folder = _as_path(raw)
            if not folder:
                continue  # the field itself reports it
            if self.local:
                if not os.path.exists(folder):
                    _put(errors, path, f"No such directory: {folder!r}.")
                    continue
                if not os.path.isdir(folder):
                    _put(errors, path, f"Not a directory: {folder!r}.")
                    continue
                same = os.path.realpath(folder)
            else:
                same = os.path.normpath(folder)
            if same in seen:
                _put(errors, path, f"Duplicate of {name}.{seen[same]}: {folder!r}.")
            else:
                seen[same] = path[-1]
        return errors


class DataSampleSchema(_DataSampleBase):
    """``add_data_sample``: one sample folder."""

    path = PathText(required=True)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _folders(self, data: dict, original: Any, **kwargs: Any) -> None:
        errors = self._check_folders(original, "path")
        if errors:
            raise ValidationError(errors)


class DataSamplesSchema(_DataSampleBase):
    """``add_data_samples``: several sample folders, each given once."""

    paths = List(PathText(), required=True, non_empty=True)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _folders(self, data: dict, original: Any, **kwargs: Any) -> None:
        errors = self._check_folders(original, "paths")
        if errors:
            raise ValidationError(errors)


class _FileAssetBase(InputSchema):
    name = Text(required=True)
    description = ExistingFile(required=True)
    permissions = fields.Nested(PermissionsSchema, required=True)
    metadata = Metadata()


class DatasetSchema(_FileAssetBase):
    """``add_dataset``."""

    type = Text(required=True)
    data_opener = ExistingFile(required=True)
    objective_key = Key()


class ObjectiveSchema(_FileAssetBase):
    """``add_objective``."""

    metrics_name = Text(required=True)
    metrics = ExistingFile(required=True)
    test_data_manager_key = Key()
    test_data_sample_keys = _key_list()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _test_dataset(self, data: dict, original: Any, **kwargs: Any) -> None:
        errors = _both_or_neither(original, "test_data_manager_key", "test_data_sample_keys")
        if errors:
            raise ValidationError(errors)


class AlgoSchema(_FileAssetBase):
    """``add_algo``, ``add_aggregate_algo``, ``add_composite_algo``."""

    file = ExistingFile(required=True)


class _TupleBase(_Tagged):
    algo_key = Key(required=True)
    rank = StrictInt(validate=validators.Range(min=0))
    compute_plan_id = Key()


class TraintupleSchema(_TupleBase):
    """``add_traintuple``."""

    data_manager_key = Key(required=True)
    train_data_sample_keys = _key_list(required=True, non_empty=True)
    in_models_keys = _key_list()


class AggregatetupleSchema(_TupleBase):
    """``add_aggregatetuple``: aggregates the models of ``in_models_keys`` on ``worker``."""

    in_models_keys = _key_list(required=True, non_empty=True)
    worker = Text(required=True)


class CompositeTraintupleSchema(_TupleBase):
    """``add_composite_traintuple``: input head and trunk models come together or not at all."""

    data_manager_key = Key(required=True)
    train_data_sample_keys = _key_list(required=True, non_empty=True)
    in_head_model_key = Key()
    in_trunk_model_key = Key()
    out_trunk_model_permissions = fields.Nested(TrunkPermissionsSchema, required=True)

    _in_models = _together("in_head_model_key", "in_trunk_model_key")


class TesttupleSchema(_Tagged):
    """``add_testtuple``: without a dataset, the objective's test dataset is used."""

    objective_key = Key(required=True)
    traintuple_key = Key(required=True)
    data_manager_key = Key()
    test_data_sample_keys = _key_list(non_empty=True)

    _dataset = _together("data_manager_key", "test_data_sample_keys")


# Compute plan items: tuples named by caller ids, which the plan maps to keys.


class PlanTraintupleSchema(_Tagged):
    traintuple_id = Text(required=True)
    algo_key = Key(required=True)
    data_manager_key = Key(required=True)
    train_data_sample_keys = _key_list(required=True, non_empty=True)
    in_models_ids = List(Text())


class PlanCompositeTraintupleSchema(_Tagged):
    composite_traintuple_id = Text(required=True)
    algo_key = Key(required=True)
    data_manager_key = Key(required=True)
    train_data_sample_keys = _key_list(required=True, non_empty=True)
    in_head_model_id = Text()
    in_trunk_model_id = Text()
    out_trunk_model_permissions = fields.Nested(TrunkPermissionsSchema, required=True)

    _in_models = _together("in_head_model_id", "in_trunk_model_id")


class PlanAggregatetupleSchema(_Tagged):
    aggregatetuple_id = Text(required=True)
    algo_key = Key(required=True)
    worker = Text(required=True)
    in_models_ids = List(Text(), required=True, non_empty=True)


class PlanTesttupleSchema(_Tagged):
    objective_key = Key(required=True)
    traintuple_id = Text(required=True)
    data_manager_key = Key()
    test_data_sample_keys = _key_list(non_empty=True)

    _dataset = _together("data_manager_key", "test_data_sample_keys")


# list name -> (field holding the item's id, reference fields: name -> (many, kinds allowed))
_MODEL_KINDS = ("traintuples", "composite_traintuples", "aggregatetuples")
_PLAN_LISTS: dict[str, tuple[str | None, dict[str, tuple[bool, tuple[str, ...]]]]] = {
    "traintuples": ("traintuple_id", {"in_models_ids": (True, _MODEL_KINDS)}),
    "composite_traintuples": (
        "composite_traintuple_id",
        {
            # a head model only comes out of a composite traintuple
            "in_head_model_id": (False, ("composite_traintuples",)),
            "in_trunk_model_id": (False, _MODEL_KINDS),
        },
    ),
    "aggregatetuples": ("aggregatetuple_id", {"in_models_ids": (True, _MODEL_KINDS)}),
    "testtuples": (None, {"traintuple_id": (False, _MODEL_KINDS)}),
}


def _plan_items(original: Any) -> list[tuple[str, int, Mapping]]:
    if not isinstance(original, Mapping):
        return []
    items = []
    for kind in _PLAN_LISTS:
        value = original.get(kind)
        if isinstance(value, (list, tuple)):
            items += [(kind, i, item) for i, item in enumerate(value) if isinstance(item, Mapping)]
    return items


def _plan_ids(items: list[tuple[str, int, Mapping]], errors: dict) -> dict[str, tuple[str, int]]:
    """Each tuple id -> (list, index); a duplicate id is an error on its second use."""
    ids: dict[str, tuple[str, int]] = {}
    for kind, i, item in items:
        id_field = _PLAN_LISTS[kind][0]
        value = item.get(id_field) if id_field else None
        if not isinstance(value, str) or not value:
            continue
        if value in ids:
            first = ".".join(map(str, ids[value]))
            _put(errors, (kind, i, id_field), f"Duplicate id {value!r} (also {first}).")
        else:
            ids[value] = (kind, i)
    return ids


def _plan_references(
    items: list[tuple[str, int, Mapping]], ids: dict[str, tuple[str, int]], errors: dict
) -> dict[str, list[tuple[tuple, str]]]:
    """Check every in-plan reference; return the DAG: id -> [(field path, parent id)]."""
    parents: dict[str, list[tuple[tuple, str]]] = {i: [] for i in ids}
    for kind, i, item in items:
        id_field, references = _PLAN_LISTS[kind]
        own = item.get(id_field) if id_field else None
        for name, (many, kinds) in references.items():
            if name not in item:
                continue
            value = item[name]
            if many:
                if not isinstance(value, (list, tuple)):
                    continue
                refs = [((kind, i, name, j), v) for j, v in enumerate(value)]
            else:
                refs = [((kind, i, name), value)]
            for path, ref in refs:
                if not isinstance(ref, str) or not ref:
                    continue  # the field itself reports it
                if ref not in ids:
                    _put(errors, path, f"Unknown id {ref!r}: not defined in this compute plan.")
                elif ids[ref][0] not in kinds:
                    wanted = " or ".join(k[:-1].replace("_", " ") for k in kinds)
                    _put(errors, path, f"Id {ref!r} is not a {wanted} of this compute plan.")
                elif isinstance(own, str) and ids.get(own) == (kind, i):
                    parents[own].append((path, ref))
    return parents


def _plan_cycles(parents: dict[str, list[tuple[tuple, str]]], errors: dict) -> None:
    """Report each cycle once, on the reference that closes it (iterative: plans are long)."""
    visiting, done = 1, 2
    state: dict[str, int] = {}
    for start in parents:
        if start in state:
            continue
        state[start] = visiting
        chain = [start]
        stack = [iter(parents[start])]
        while stack:
            for path, parent in stack[-1]:
                if parent not in state:
                    state[parent] = visiting
                    chain.append(parent)
                    stack.append(iter(parents[parent]))
                    break
                if state[parent] == visiting:
                    cycle = chain[chain.index(parent) :] + [parent]
                    _put(errors, path, "Cycle: " + " -> ".join(map(repr, cycle)) + ".")
            else:
                state[chain.pop()] = done
                stack.pop()


class UpdateComputePlanSchema(InputSchema):
    """``update_compute_plan``: tuples added to a plan; ids may name tuples already in it."""

    traintuples = List(fields.Nested(PlanTraintupleSchema))
    composite_traintuples = List(fields.Nested(PlanCompositeTraintupleSchema))
    aggregatetuples = List(fields.Nested(PlanAggregatetupleSchema))
    testtuples = List(fields.Nested(PlanTesttupleSchema))

    check_references = False  # the plan's earlier tuples are on the node, not in the data

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _plan(self, data: dict, original: Any, **kwargs: Any) -> None:
        errors: dict = {}
        ids = _plan_ids(_plan_items(original), errors)
        if self.check_references:
            parents = _plan_references(_plan_items(original), ids, errors)
            _plan_cycles(parents, errors)
        if errors:
            raise ValidationError(errors)


class ComputePlanSchema(UpdateComputePlanSchema):
    """``add_compute_plan``: a DAG whose references all name tuples of the same data."""

    clean_models = StrictBool()
    tag = Text(allow_empty=True)
    metadata = Metadata()

    check_references = True


# --- operations -------------------------------------------------------------------------

DATA_SCHEMAS: dict[str, type[InputSchema]] = {
    "add_data_sample": DataSampleSchema,
    "add_data_samples": DataSamplesSchema,
    "add_dataset": DatasetSchema,
    "add_objective": ObjectiveSchema,
    "add_algo": AlgoSchema,
    "add_aggregate_algo": AlgoSchema,
    "add_composite_algo": AlgoSchema,
    "add_traintuple": TraintupleSchema,
    "add_aggregatetuple": AggregatetupleSchema,
    "add_composite_traintuple": CompositeTraintupleSchema,
    "add_testtuple": TesttupleSchema,
    "add_compute_plan": ComputePlanSchema,
    "update_compute_plan": UpdateComputePlanSchema,
}
"""Operation -> schema of its ``data`` argument."""

_DOWNLOADS = (
    "download_dataset",
    "download_algo",
    "download_aggregate_algo",
    "download_composite_algo",
    "download_objective",
)

ARGUMENTS: dict[str, tuple[str, ...]] = {
    **{operation: ("data",) for operation in DATA_SCHEMAS},
    "update_compute_plan": ("compute_plan_id", "data"),
    "cancel_compute_plan": ("compute_plan_id",),
    "link_dataset_with_objective": ("dataset_key", "objective_key"),
    "link_dataset_with_data_samples": ("dataset_key", "data_sample_keys"),
    **{operation: ("key", "destination_folder") for operation in _DOWNLOADS},
}
"""Operation -> the Client method's arguments, options (``local``, ``exist_ok``) aside."""

_ARGUMENT_FIELDS: dict[str, Any] = {
    "compute_plan_id": lambda: Key(required=True),
    "dataset_key": lambda: Key(required=True),
    "objective_key": lambda: Key(required=True),
    "data_sample_keys": lambda: _key_list(required=True, non_empty=True),
    "key": lambda: Key(required=True),
    "destination_folder": lambda: PathText(required=True),
}


def _call_schema(operation: str) -> type[InputSchema]:
    attrs: dict[str, Any] = {}
    for name in ARGUMENTS[operation]:
        if name == "data":
            attrs[name] = Data(DATA_SCHEMAS[operation], required=True)
        else:
            attrs[name] = _ARGUMENT_FIELDS[name]()
    class_name = "".join(part.title() for part in operation.split("_")) + "Call"
    attrs["__doc__"] = f"The arguments of ``Client.{operation}``, as a job payload holds them."
    return type(class_name, (InputSchema,), attrs)


OPERATIONS: dict[str, type[InputSchema]] = {op: _call_schema(op) for op in ARGUMENTS}
"""Operation -> schema of its call arguments ``{argument name: value}`` (a job payload).

Instantiate with ``local=`` as the Client's option; prefer ``validate_call``, which
raises ``InvalidInput`` with dotted field paths.
"""


# --- entry points -----------------------------------------------------------------------


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages -> {"dotted.path": [messages]}."""
    out: dict[str, list[str]] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for name, sub in node.items():
                if name == "_schema":
                    walk(sub, path)
                else:
                    walk(sub, f"{path}.{name}" if path else str(name))
        elif isinstance(node, (list, tuple)):
            for sub in node:
                walk(sub, path)
        else:
            out.setdefault(path or "_schema", []).append(str(node))

    walk(messages, prefix)
    return out


def _invalid(operation: str, errors: dict[str, list[str]]) -> InvalidInput:
    detail = "; ".join(f"{path}: {' '.join(msgs)}" for path, msgs in sorted(errors.items()))
    return InvalidInput(f"invalid input for {operation}: {detail}", errors)


@cache
def _loader(schemas: str, operation: str, local: bool) -> InputSchema:
    """One schema instance per (operation, local): building one costs more than a load.

    The instances hold no per-load state, so threads may share them.
    """
    table = DATA_SCHEMAS if schemas == "data" else OPERATIONS
    return table[operation](local=local)


def _check_operation(operation: Any) -> None:
    if not isinstance(operation, str) or operation not in ARGUMENTS:
        raise InvalidInput(
            f"unknown operation: {operation!r}",
            {"operation": [f"Unknown operation {operation!r}."]},
        )


def validate(operation: str, data: Any, *, local: bool = True) -> dict:
    """Validate the ``data`` dict of ``operation``; return the dict to send.

    Raises ``InvalidInput`` naming every wrong field (``.errors``: dotted path ->
    messages). The result holds exactly the given fields, ``authorizedIDs``
    renamed ``authorized_ids``.
    """
    _check_operation(operation)
    if operation not in DATA_SCHEMAS:
        raise ValueError(f"{operation} takes no data dict: use validate_call")
    if not isinstance(data, Mapping):
        raise _invalid(operation, {"_schema": ["Invalid input type: expected a dict."]})
    try:
        return _loader("data", operation, bool(local)).load(data)
    except ValidationError as e:
        raise _invalid(operation, _flatten(e.messages)) from e


def validate_call(operation: str, arguments: Any, *, local: bool = True) -> dict:
    """Validate a job payload ``{argument name: value}`` of ``operation``.

    The names are those of ``ARGUMENTS[operation]``; errors are keyed by dotted
    paths from there (``data.permissions.public``, ``dataset_key``). Returns the
    normalised arguments.
    """
    _check_operation(operation)
    if not isinstance(arguments, Mapping):
        raise _invalid(operation, {"_schema": ["Invalid input type: expected a dict."]})
    try:
        return _loader("call", operation, bool(local)).load(arguments)
    except ValidationError as e:
        raise _invalid(operation, _flatten(e.messages)) from e
