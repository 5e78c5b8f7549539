"""What every part of the node shares: its stores, its folders, its identity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from substra_worker.node.errors import BadRequest
from substra_worker.node.files import FileStore
from substra_worker.node.keys import is_key
from substra_worker.node.store import Store


@dataclass
class Context:
    """The state folder's stores and layout, and the node's id and public URL."""

    state_dir: Path
    store: Store
    files: FileStore
    node_id: str
    base_url: str = ""
    python: str = "python3"
    step_timeout: float = 3600.0

    @property
    def samples_dir(self) -> Path:
        return self.state_dir / "samples"  # uploaded samples, one folder per key

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"  # extracted algo and metrics archives, per key

    @property
    def sandboxes_dir(self) -> Path:
        return self.state_dir / "sandboxes"  # one per running tuple, removed after it

    @property
    def tmp_dir(self) -> Path:
        return self.state_dir / "tmp"  # uploads being extracted

    def address(self, *parts: str) -> str:
        """``{base_url}/<parts...>/``: a storageAddress on this node."""
        return f"{self.base_url.rstrip('/')}/{'/'.join(parts)}/"


def check_key(value: Any, what: str = "key") -> str:
    """``value`` if it is a 64-hex key, else ``BadRequest`` naming ``what``."""
    if not is_key(value):
        raise BadRequest(f"{what} must be 64 hexadecimal characters, got {value!r}")
    return value


def permissions(value: Any, field: str = "permissions") -> dict[str, Any]:
    """Normalized ``{"public", "authorized_ids"}`` from any spelling a client sends.

    Accepts ``authorized_ids`` and ``authorizedIDs`` (the reference document uses both),
    and the GET shape ``{"process": {...}}``. Missing permissions mean public.
    """
    if value is None:
        return {"public": True, "authorized_ids": []}
    if not isinstance(value, dict):
        raise BadRequest(f"{field} must be an object")
    if isinstance(value.get("process"), dict):
        value = value["process"]
    public = value.get("public", False)
    if not isinstance(public, bool):
        raise BadRequest(f"{field}.public must be a boolean")
    ids = value.get("authorized_ids", value.get("authorizedIDs", []))
    if ids is None:
        ids = []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest(f"{field}.authorized_ids must be a list of node ids")
    return {"public": public, "authorized_ids": list(ids)}


def permissions_shape(perms: dict[str, Any]) -> dict[str, Any]:
    return {"process": {"public": perms["public"], "authorizedIDs": list(perms["authorized_ids"])}}


def optional_str(data: dict, field: str, default: str = "") -> str:
    value = data.get(field)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string")
    return value


def required_str(data: dict, field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{field} is required (a non-empty string)")
    return value


def metadata(data: dict) -> dict[str, Any]:
    value = data.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("metadata must be an object")
    return dict(value)


def key_list(data: dict, field: str, *, required: bool = False) -> list[str]:
    value = data.get(field)
    if value is None:
        if required:
            raise BadRequest(f"{field} is required")
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise BadRequest(f"{field} must be a list of keys")
    for item in value:
        check_key(item, f"every item of {field}")
    if required and not value:
        raise BadRequest(f"{field} must not be empty")
    return list(value)
