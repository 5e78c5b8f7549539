"""Channels: the first-level folders of the watch root, each bound to a dataset.

A channel folder holds a ``channel.json`` that says which dataset its samples
belong to, either by key (``dataset_keys``) or by describing a dataset that the
watcher registers first (``dataset``: name, type, opener, description...).
Every other folder inside the channel is one data sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

CONFIG_NAME = "channel.json"
MODES = ("upload", "server_path")
_KEY = validate.Regexp(r"^[0-9a-f]{64}$", error="must be a 64-character lowercase hex key")


class ChannelError(Exception):
    """Raised when a channel folder cannot be used: no config, or a config that is wrong."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Permissions(Schema):
    class Meta:
        unknown = RAISE

    public = fields.Boolean(required=True)
    authorized_ids = fields.List(fields.String(), load_default=list)


class _DatasetDescription(Schema):
    """A dataset the watcher registers before the channel's samples (paths relative to it)."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1))
    type = fields.String(required=True, validate=validate.Length(min=1))
    data_opener = fields.String(required=True, validate=validate.Length(min=1))
    description = fields.String(required=True, validate=validate.Length(min=1))
    permissions = fields.Nested(
        _Permissions, load_default=lambda: {"public": True, "authorized_ids": []}
    )
    objective_key = fields.String(load_default=None, allow_none=True, validate=_KEY)
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), load_default=None)


class ChannelSchema(Schema):
    """The ``channel.json`` file of a channel."""

    class Meta:
        unknown = RAISE

    dataset_keys = fields.List(fields.String(validate=_KEY), validate=validate.Length(min=1))
    dataset_key = fields.String(validate=_KEY)
    dataset = fields.Nested(_DatasetDescription)
    test_only = fields.Boolean(load_default=False)
    mode = fields.String(load_default="upload", validate=validate.OneOf(MODES))
    batch_size = fields.Integer(load_default=None, validate=validate.Range(min=1, max=10_000))

    @validates_schema
    def _one_dataset(self, data: dict, **kwargs: Any) -> None:
        given = [k for k in ("dataset_keys", "dataset_key", "dataset") if k in data]
        if len(given) != 1:
            raise ValidationError(
                "give exactly one of dataset_keys, dataset_key or dataset", "_schema"
            )

    @post_load
    def _merge_keys(self, data: dict, **kwargs: Any) -> dict:
        if "dataset_key" in data:
            data["dataset_keys"] = [data.pop("dataset_key")]
        return data


@dataclass(frozen=True)
class Channel:
    """One loaded channel: where its samples go and how they are sent."""

    name: str
    path: Path
    test_only: bool
    mode: str  # "upload" (local=True) or "server_path" (local=False)
    batch_size: int
    dataset_keys: tuple[str, ...]  # every dataset the samples are linked to
    dataset: dict | None = None  # description to register first (absolute file paths)
    reserved: frozenset[str] = field(
        default_factory=frozenset
    )  # top-level names that are not samples
    config_stamp: tuple[int, int] = (0, 0)  # (mtime_ns, size) of channel.json when loaded

    @property
    def local(self) -> bool:
        """True when samples are uploaded; False when the node reads them from its disk."""
        return self.mode == "upload"

    @property
    def registers_dataset(self) -> bool:
        return self.dataset is not None

    @property
    def dataset_key(self) -> str:
        """The first dataset key: the one duplicates are counted against."""
        return self.dataset_keys[0]


def config_stamp(channel_dir: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of the channel's config, or None when there is none."""
    try:
        st = (channel_dir / CONFIG_NAME).stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def load_channel(channel_dir: Path, *, default_batch_size: int) -> Channel:
    """Read and check ``channel_dir/channel.json``; raise ChannelError with a clear reason."""
    config_path = channel_dir / CONFIG_NAME
    stamp = config_stamp(channel_dir)
    if stamp is None:
        raise ChannelError(f"channel has no {CONFIG_NAME}: its folders are not submitted")
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ChannelError(f"cannot read {CONFIG_NAME}: {e}") from e
    except json.JSONDecodeError as e:
        raise ChannelError(f"{CONFIG_NAME} is not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise ChannelError(f"{CONFIG_NAME} must hold a JSON object")
    try:
        data = ChannelSchema().load(raw)
    except ValidationError as e:
        raise ChannelError(f"invalid {CONFIG_NAME}: {_flatten(e.messages)}") from e

    reserved = {CONFIG_NAME}
    dataset = None
    if "dataset" in data:
        dataset = dict(data["dataset"])
        for part in ("data_opener", "description"):
            path, top = _dataset_file(channel_dir, dataset[part], part)
            dataset[part] = str(path)
            if top:
                reserved.add(top)
        keys = (file_sha256(Path(dataset["data_opener"])),)
    else:
        keys = tuple(dict.fromkeys(data["dataset_keys"]))
    return Channel(
        name=channel_dir.name,
        path=channel_dir,
        test_only=data["test_only"],
        mode=data["mode"],
        batch_size=data["batch_size"] or default_batch_size,
        dataset_keys=keys,
        dataset=dataset,
        reserved=frozenset(reserved),
        config_stamp=stamp,
    )


def _dataset_file(channel_dir: Path, value: str, part: str) -> tuple[Path, str | None]:
    """Resolve a dataset file named in the config; return it and its top-level name if inside."""
    rel = PurePosixPath(value)
    path = Path(value) if rel.is_absolute() else channel_dir / value
    if not path.is_file():
        raise ChannelError(f"dataset.{part}: {value!r} is not a file")
    try:
        path.open("rb").close()
    except OSError as e:
        raise ChannelError(f"dataset.{part}: cannot read {value!r}: {e}") from e
    if rel.is_absolute() or ".." in rel.parts:
        return path.resolve(), None
    return path.resolve(), rel.parts[0]


def file_sha256(path: Path) -> str:
    """sha256 hex of a file, read in chunks (a dataset's key is the hash of its opener)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _flatten(messages: Any, prefix: str = "") -> str:
    """Marshmallow's nested error dict as one readable line: 'field.sub: message; ...'."""
    if isinstance(messages, dict):
        parts = []
        for key, value in messages.items():
            name = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            parts.append(_flatten(value, name))
        return "; ".join(parts)
    if isinstance(messages, list):
        text = ", ".join(str(m) for m in messages)
        return f"{prefix}: {text}" if prefix else text
    return f"{prefix}: {messages}" if prefix else str(messages)
