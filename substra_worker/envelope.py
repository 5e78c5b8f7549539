"""The job envelope: what a producer submits, validated before anything is queued.

An envelope is JSON-friendly (the HTTP API and the CLI read it from JSON)::

    {
        "operation": "add_data_samples",        # a Client write method
        "payload": {...},                       # its input, see below
        "options": {"exist_ok": false, "local": true, "destination": null},
        "target": null,                         # a ~/.substra profile name; null: the
                                                # worker's configured node. Never a token.
        "idempotency_key": "folder-sha",        # same key again: the existing job
        "references": [],                       # extra job ids to wait for
        "follow": false,                        # track a tuple's or plan's progress
        "producer": "default"                   # who submitted; scopes keys and references
    }

The payload is the Client method's ``data`` dict for the ``add_*`` calls, and
the method's named arguments otherwise: ``{"compute_plan_id", "data"}`` for
``update_compute_plan``, ``{"compute_plan_id"}`` for ``cancel_compute_plan``,
``{"dataset_key", "objective_key"}`` and ``{"dataset_key", "data_sample_keys"}``
for the links, ``{"key"}`` for the downloads (the folder is
``options.destination``). Any value may be a reference (``substra_worker.references``).
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from substra_worker import references, schemas
from substra_worker.sdk.exceptions import InvalidInput


@dataclass(frozen=True)
class Operation:
    """What the queue needs to know about one Client write method."""

    name: str
    asset: str  # public asset name it acts on
    args: tuple[str, ...] = ()  # payload fields passed as arguments; () means one data dict
    creates: bool = False  # creates an asset: a retry uses exist_ok semantics
    exist_ok: bool = False  # the Client method takes exist_ok
    local: bool = False  # the Client method takes local
    followable: bool = False  # the result is a tuple or plan whose progress can be followed
    download: bool = False

    @property
    def data_dict(self) -> bool:
        return not self.args


def _ops(*ops: Operation) -> dict[str, Operation]:
    return {op.name: op for op in ops}


OPERATIONS: dict[str, Operation] = _ops(
    Operation("add_data_sample", "data_sample", creates=True, exist_ok=True, local=True),
    Operation("add_data_samples", "data_sample", creates=True, local=True),
    Operation("add_dataset", "dataset", creates=True, exist_ok=True),
    Operation("add_objective", "objective", creates=True, exist_ok=True),
    Operation("add_algo", "algo", creates=True, exist_ok=True),
    Operation("add_aggregate_algo", "aggregate_algo", creates=True, exist_ok=True),
    Operation("add_composite_algo", "composite_algo", creates=True, exist_ok=True),
    *(
        Operation(f"add_{kind}", kind, creates=True, exist_ok=True, followable=True)
        for kind in ("traintuple", "aggregatetuple", "composite_traintuple", "testtuple")
    ),
    Operation("add_compute_plan", "compute_plan", creates=True, followable=True),
    Operation(
        "update_compute_plan", "compute_plan", args=("compute_plan_id", "data"), followable=True
    ),
    Operation("cancel_compute_plan", "compute_plan", args=("compute_plan_id",)),
    Operation("link_dataset_with_objective", "dataset", args=("dataset_key", "objective_key")),
    Operation(
        "link_dataset_with_data_samples", "dataset", args=("dataset_key", "data_sample_keys")
    ),
    *(
        Operation(f"download_{kind}", kind, args=("key",), download=True)
        for kind in ("dataset", "algo", "aggregate_algo", "composite_algo", "objective")
    ),
)

# payload fields holding files or folders the worker reads (made absolute at submit)
PATH_FIELDS = ("data_opener", "description", "metrics", "file")
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
PROFILE_RE = r"^[A-Za-z0-9_.\-]{1,64}$"
PRODUCER_RE = r"^[A-Za-z0-9_.@:\-]{1,128}$"


def new_job_id() -> str:
    return uuid.uuid4().hex


def _default_options() -> dict[str, Any]:
    return {"exist_ok": False, "local": True, "destination": None}


class OptionsSchema(Schema):
    """Options of a job: those of the Client method, and the download folder."""

    class Meta:
        unknown = RAISE

    exist_ok = fields.Boolean(load_default=False)
    local = fields.Boolean(load_default=True)
    destination = fields.String(load_default=None, allow_none=True)


class EnvelopeSchema(Schema):
    """The job envelope; unknown fields (a token, say) are refused."""

    class Meta:
        unknown = RAISE

    id = fields.String(validate=validate.Regexp(JOB_ID_RE))
    operation = fields.String(required=True, validate=validate.OneOf(sorted(OPERATIONS)))
    payload = fields.Dict(keys=fields.String(), required=True)
    options = fields.Nested(OptionsSchema, load_default=_default_options)
    target = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(PROFILE_RE))
    idempotency_key = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=256)
    )
    references = fields.List(fields.String(validate=validate.Regexp(JOB_ID_RE)), load_default=list)
    follow = fields.Boolean(load_default=False)
    producer = fields.String(load_default="default", validate=validate.Regexp(PRODUCER_RE))

    @validates_schema
    def _check_options(self, data: dict[str, Any], **kwargs: Any) -> None:
        op = OPERATIONS.get(data.get("operation", ""))
        if op is None:
            return
        if data.get("follow") and not op.followable:
            raise ValidationError(f"{op.name} cannot be followed", "follow")
        options = data.get("options") or {}
        if options.get("exist_ok") and not op.exist_ok and op.name != "add_data_samples":
            raise ValidationError(f"{op.name} takes no exist_ok", "options")


# one instance serves every submit: building a schema costs more than loading with it
_ENVELOPE = EnvelopeSchema()


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dict as ``{"dotted.field": [messages]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for name, value in messages.items():
            key = f"{prefix}.{name}" if prefix else str(name)
            if key.endswith("._schema"):
                key = key[: -len("._schema")]
            out.update(flatten_errors(value, key))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out[prefix or "_schema"] = list(messages)
    elif isinstance(messages, list):
        for i, value in enumerate(messages):
            out.update(flatten_errors(value, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix or "_schema"] = [str(messages)]
    return out


def invalid(errors: dict[str, list[str]]) -> InvalidInput:
    first = next(iter(errors.items()))
    return InvalidInput(f"invalid job: {first[0]}: {'; '.join(first[1])}", errors)


def load_envelope(
    data: Any, *, download_root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Validate an envelope and its payload; return the envelope to record.

    Raises ``InvalidInput`` (``.errors``: dotted field -> messages) and records
    nothing. The returned envelope has an ``id``, absolute paths, an absolute
    download destination, and ``references`` listing every job it waits for.
    """
    if not isinstance(data, dict):
        raise invalid({"_schema": ["a job envelope is a JSON object"]})
    data = references.normalize(data)
    if isinstance(data.get("references"), list):
        # extra references may be given as job ids or as "$job:<id>" strings
        data["references"] = [
            r[len(references.PREFIX) :]
            if isinstance(r, str) and r.startswith(references.PREFIX)
            else r
            for r in data["references"]
        ]
    try:
        envelope = _ENVELOPE.load(data)
    except ValidationError as e:
        raise invalid(flatten_errors(e.messages)) from e
    envelope.setdefault("id", new_job_id())
    op = OPERATIONS[envelope["operation"]]
    if op.download and "destination_folder" in envelope["payload"]:
        # the Client's argument name is accepted in the payload too
        payload = dict(envelope["payload"])
        folder = payload.pop("destination_folder")
        if envelope["options"].get("destination") is None and isinstance(folder, str):
            envelope["options"]["destination"] = folder
        envelope["payload"] = payload
    try:
        refs = references.find_refs(envelope["payload"])
    except references.BadReference as e:
        raise invalid({"payload": [str(e)]}) from e
    envelope["payload"] = _absolute_paths(op, envelope["payload"], envelope["options"])
    validate_payload(op, envelope["payload"], envelope["options"])
    if op.download:
        envelope["options"]["destination"] = confine_destination(
            envelope["options"]["destination"], download_root
        )
    ref_ids = [r.job_id for r in refs]
    envelope["references"] = list(dict.fromkeys(ref_ids + list(envelope["references"])))
    if envelope["id"] in envelope["references"]:
        raise invalid({"references": ["a job cannot refer to itself"]})
    return envelope


def validate_payload(op: Operation, payload: dict[str, Any], options: dict[str, Any]) -> None:
    """Validate ``payload`` as the Client would, with references standing for keys."""
    checked = references.with_placeholders(payload)
    local = options.get("local", True) if op.local else True
    try:
        if op.data_dict:
            schemas.validate(op.name, checked, local=local)
        else:
            arguments = dict(checked)
            if op.download:
                arguments["destination_folder"] = options.get("destination") or ""
            schemas.validate_call(op.name, arguments, local=local)
    except InvalidInput as e:
        errors = e.errors or {"_schema": [str(e)]}
        raise invalid(
            {
                (f"payload.{k}" if k != "_schema" else "payload"): v
                if isinstance(v, list)
                else [str(v)]
                for k, v in flatten_errors(errors).items()
            }
        ) from e


def _absolute_paths(
    op: Operation, payload: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    """Make file paths absolute: the worker does not share the producer's directory."""
    if not op.data_dict:
        return payload
    out = dict(payload)
    for name in PATH_FIELDS:
        if _is_path(out.get(name)):
            out[name] = os.path.abspath(os.path.expanduser(out[name]))
    # server-side paths (local=False) are the node's business
    if op.local and options.get("local", True):
        if _is_path(out.get("path")):
            out["path"] = os.path.abspath(os.path.expanduser(out["path"]))
        if isinstance(out.get("paths"), list):
            out["paths"] = [
                os.path.abspath(os.path.expanduser(p)) if _is_path(p) else p for p in out["paths"]
            ]
    return out


def _is_path(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and references.parse_ref(value) is None


def confine_destination(destination: str, download_root: str | os.PathLike[str] | None) -> str:
    """The absolute download folder; inside ``download_root`` when one is set.

    A relative destination is taken relative to ``download_root`` (else to the
    current directory). Symlinks are resolved before the check, so neither
    ``..`` nor a link can lead outside the root.
    """
    if download_root is None:
        return str(Path(os.path.expanduser(destination)).resolve())
    root = Path(download_root).expanduser().resolve()
    target = (root / os.path.expanduser(destination)).resolve()
    if target != root and root not in target.parents:
        raise invalid({"options.destination": [f"must be inside the download root {root}"]})
    return str(target)
