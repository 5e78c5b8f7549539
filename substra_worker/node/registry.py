"""Registering file assets and data samples, and linking them.

Datasets, objectives and algos keep their files in the content-addressed file
store; algo and metrics archives are also extracted once, safely, into
``cache/<key>/`` (which validates them at upload time: a bad archive or a
Dockerfile without a usable ENTRYPOINT is a 400 then, not a failed tuple later).
Data samples live in ``samples/<key>/`` when uploaded, or stay where they are
when registered from a server path inside the node's data roots.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from substra_worker.node import extract, keys
from substra_worker.node.context import (
    Context,
    check_key,
    key_list,
    metadata,
    optional_str,
    permissions,
    required_str,
)
from substra_worker.node.errors import BadRequest, Conflict, Forbidden, NotFound
from substra_worker.node.store import dumps, loads
from substra_worker.sdk.assets import ALGO_KINDS

KIND_LABELS = {
    "data_manager": "dataset",
    "objective": "objective",
    "algo": "algo",
    "aggregate_algo": "aggregate algo",
    "composite_algo": "composite algo",
}


# --- reading ------------------------------------------------------------------------


def asset_body(ctx: Context, kind: str, key: str) -> dict[str, Any] | None:
    row = ctx.store.conn.execute(
        "SELECT body FROM assets WHERE kind = ? AND key = ?", (kind, key)
    ).fetchone()
    return loads(row["body"]) if row else None


def require_asset(ctx: Context, kind: str, key: Any, field: str) -> dict[str, Any]:
    """The body of an asset a request refers to; ``BadRequest`` when it does not exist."""
    check_key(key, field)
    body = asset_body(ctx, kind, key)
    if body is None:
        raise BadRequest(f"{field}: no {KIND_LABELS[kind]} with key {key}")
    return body


# --- files ----------------------------------------------------------------------------


def _file(files: Mapping[str, Any], name: str) -> Path:
    path = files.get(name)
    if path is None:
        raise BadRequest(f"the file part {name!r} is missing")
    path = Path(path)
    if not path.is_file():
        raise BadRequest(f"the file part {name!r} is not a readable file")
    return path


def extracted(ctx: Context, key: str, label: str = "archive") -> Path:
    """``cache/<key>/``: the archive of ``key`` extracted (safely), extracting it if needed."""
    target = ctx.cache_dir / key
    if target.is_dir():
        return target
    source = ctx.files.path(key)
    if not source.is_file():
        raise NotFound(f"the archive {key} is not in the file store")
    ctx.cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = ctx.cache_dir / f".{key}.{uuid.uuid4().hex}"
    extract.safe_extract(source, tmp, label=label)
    try:
        os.rename(tmp, target)
    except OSError:
        # another thread or process extracted it first: same bytes, keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise
    return target


def _validate_archive(ctx: Context, key: str, label: str) -> None:
    from substra_worker.node.executor import entrypoint_script

    folder = extracted(ctx, key, label)
    try:
        entrypoint_script(folder)
    except ValueError as e:
        shutil.rmtree(folder, ignore_errors=True)
        raise BadRequest(f"{label}: {e}") from e


def _insert_asset(ctx: Context, kind: str, key: str, body: dict[str, Any]) -> None:
    with ctx.store.transaction() as conn:
        if conn.execute("SELECT 1 FROM assets WHERE kind = ? AND key = ?", (kind, key)).fetchone():
            raise Conflict(f"this {KIND_LABELS[kind]} already exists", pkhash=key)
        seq = ctx.store.next_seq(conn)
        conn.execute(
            "INSERT INTO assets (kind, key, seq, body) VALUES (?, ?, ?, ?)",
            (kind, key, seq, dumps(body)),
        )
        if kind == "objective" and body.get("test_data_manager_key"):
            _attach_objective(ctx, body["test_data_manager_key"], key, only_if_free=True)


def _conflict_if_exists(ctx: Context, kind: str, key: str) -> None:
    if asset_body(ctx, kind, key) is not None:
        raise Conflict(f"this {KIND_LABELS[kind]} already exists", pkhash=key)


# --- creates --------------------------------------------------------------------------


def add_dataset(ctx: Context, data: dict, files: Mapping[str, Any]) -> dict:
    name = required_str(data, "name")
    kind = required_str(data, "type")
    perms = permissions(data.get("permissions"))
    meta = metadata(data)
    objective_key = data.get("objective_key") or ""
    if objective_key:
        require_asset(ctx, "objective", objective_key, "objective_key")
    opener = _file(files, "data_opener")
    description = _file(files, "description")
    key = keys.sha256_file(opener)
    _conflict_if_exists(ctx, "data_manager", key)
    ctx.files.put_file(opener)
    description_hash = ctx.files.put_file(description)
    body = {
        "name": name,
        "type": kind,
        "permissions": perms,
        "metadata": meta,
        "objective_key": objective_key,
        "opener_hash": key,
        "description_hash": description_hash,
        "owner": ctx.node_id,
    }
    _insert_asset(ctx, "data_manager", key, body)
    return {"pkhash": key}


def add_objective(ctx: Context, data: dict, files: Mapping[str, Any]) -> dict:
    name = required_str(data, "name")
    metrics_name = optional_str(data, "metrics_name")
    perms = permissions(data.get("permissions"))
    meta = metadata(data)
    test_dm = data.get("test_data_manager_key") or ""
    test_samples = key_list(data, "test_data_sample_keys")
    if test_dm:
        require_asset(ctx, "data_manager", test_dm, "test_data_manager_key")
        check_samples(ctx, test_dm, test_samples, "test_data_sample_keys")
    elif test_samples:
        raise BadRequest("test_data_sample_keys needs a test_data_manager_key")
    metrics = _file(files, "metrics")
    description = _file(files, "description")
    key = keys.sha256_file(description)
    _conflict_if_exists(ctx, "objective", key)
    metrics_hash = ctx.files.put_file(metrics)
    _validate_archive(ctx, metrics_hash, "metrics")
    ctx.files.put_file(description)
    body = {
        "name": name,
        "metrics_name": metrics_name,
        "metrics_hash": metrics_hash,
        "description_hash": key,
        "test_data_manager_key": test_dm,
        "test_data_sample_keys": test_samples,
        "permissions": perms,
        "metadata": meta,
        "owner": ctx.node_id,
    }
    _insert_asset(ctx, "objective", key, body)
    return {"pkhash": key}


def add_algo(ctx: Context, kind: str, data: dict, files: Mapping[str, Any]) -> dict:
    if kind not in ALGO_KINDS:
        raise BadRequest(f"unknown algo kind {kind!r}")
    name = required_str(data, "name")
    perms = permissions(data.get("permissions"))
    meta = metadata(data)
    archive = _file(files, "file")
    description = _file(files, "description")
    key = keys.sha256_file(archive)
    _conflict_if_exists(ctx, kind, key)
    ctx.files.put_file(archive)
    _validate_archive(ctx, key, "file")
    description_hash = ctx.files.put_file(description)
    body = {
        "name": name,
        "content_hash": key,
        "description_hash": description_hash,
        "permissions": perms,
        "metadata": meta,
        "owner": ctx.node_id,
    }
    _insert_asset(ctx, kind, key, body)
    return {"pkhash": key}


# --- data samples ---------------------------------------------------------------------


def check_samples(ctx: Context, dataset_key: str, sample_keys: Sequence[str], field: str) -> None:
    """Every sample exists and is linked to the dataset, else ``BadRequest``."""
    if not sample_keys:
        return
    conn = ctx.store.conn
    marks = ",".join("?" * len(sample_keys))
    linked = {
        row["sample_key"]
        for row in conn.execute(
            "SELECT sample_key FROM sample_links "
            f"WHERE dataset_key = ? AND sample_key IN ({marks})",
            (dataset_key, *sample_keys),
        )
    }
    missing = [k for k in sample_keys if k not in linked]
    if missing:
        raise BadRequest(f"{field}: data samples not linked to dataset {dataset_key}: {missing}")


def _dataset_keys(ctx: Context, data: dict) -> list[str]:
    dm_keys = key_list(data, "data_manager_keys")
    for key in dm_keys:
        require_asset(ctx, "data_manager", key, "data_manager_keys")
    return dm_keys


def _requested_paths(data: dict) -> list[Path]:
    if data.get("paths") is not None:
        paths = data["paths"]
        if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise BadRequest("paths must be a list of folder paths")
    elif data.get("path"):
        if not isinstance(data["path"], str):
            raise BadRequest("path must be a folder path")
        paths = [data["path"]]
    else:
        raise BadRequest("path or paths is required")
    if not paths:
        raise BadRequest("paths must not be empty")
    return [Path(p) for p in paths]


def _expand_multiple(folders: list[Path], multiple: bool) -> list[Path]:
    for folder in folders:
        if not folder.is_dir():
            raise BadRequest(f"{folder} is not a folder")
    if not multiple:
        return folders
    expanded = []
    for folder in folders:
        expanded.extend(sorted(p for p in folder.iterdir() if p.is_dir()))
    if not expanded:
        raise BadRequest("multiple: the paths hold no sample folders")
    return expanded


def _inside_roots(path: Path, roots: Sequence[str | os.PathLike]) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(Path(root).resolve()) for root in roots)


def _copy_folder(source: Path, dest: Path) -> None:
    """Copy the files of ``source`` that an upload would carry (symlinked files as content)."""
    dest.mkdir(parents=True)
    for path in keys.folder_files(source):
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def add_data_samples(
    ctx: Context,
    data: dict,
    archives: Mapping[str, Any] | None,
    *,
    data_roots: Sequence[str | os.PathLike] = (),
    local_copy: bool = False,
) -> list[dict]:
    """Register samples from uploaded archives, server paths, or (``local_copy``) local folders.

    All or nothing: if any sample already exists, ``Conflict`` lists the existing keys.
    """
    dm_keys = _dataset_keys(ctx, data)
    test_only = data.get("test_only", False)
    if isinstance(test_only, str):
        test_only = test_only.lower() in ("true", "1")
    if not isinstance(test_only, bool):
        raise BadRequest("test_only must be a boolean")
    ctx.tmp_dir.mkdir(parents=True, exist_ok=True)
    staged: list[Path] = []  # folders under tmp/ that become samples/<key>/
    try:
        if archives is not None:
            if not archives:
                raise BadRequest("no data sample archive was sent")
            for label, archive in archives.items():
                dest = ctx.tmp_dir / f"sample-{uuid.uuid4().hex}"
                extract.safe_extract(archive, dest, label=label)
                staged.append(dest)
            folders = list(staged)
        else:
            requested = _requested_paths(data)
            if not local_copy:
                for path in requested:
                    if not data_roots or not _inside_roots(path, data_roots):
                        raise Forbidden(
                            f"{path} is not inside the node's data roots; upload it "
                            "(local=True) or configure a data root that contains it"
                        )
            folders = _expand_multiple(requested, bool(data.get("multiple")))
            if local_copy:
                for folder in folders:
                    dest = ctx.tmp_dir / f"sample-{uuid.uuid4().hex}"
                    _copy_folder(folder, dest)
                    staged.append(dest)
                folders = list(staged)
        sample_keys = [keys.data_sample_key(f) for f in folders]
        if len(set(sample_keys)) != len(sample_keys):
            dups = sorted({k for k in sample_keys if sample_keys.count(k) > 1})
            raise BadRequest(f"several folders of the request have the same content: {dups}")
        answer = _insert_samples(ctx, folders, sample_keys, dm_keys, test_only, bool(staged))
    finally:
        for folder in staged:
            shutil.rmtree(folder, ignore_errors=True)
    return answer


def _insert_samples(
    ctx: Context,
    folders: list[Path],
    sample_keys: list[str],
    dm_keys: list[str],
    test_only: bool,
    move: bool,
) -> list[dict]:
    ctx.samples_dir.mkdir(parents=True, exist_ok=True)
    with ctx.store.transaction() as conn:
        marks = ",".join("?" * len(sample_keys))
        existing = {
            row["key"]
            for row in conn.execute(f"SELECT key FROM samples WHERE key IN ({marks})", sample_keys)
        }
        if existing:
            raise Conflict(
                "data samples already exist", pkhash=[k for k in sample_keys if k in existing]
            )
        seq = ctx.store.next_seq(conn, len(sample_keys))
        answer = []
        for i, (folder, key) in enumerate(zip(folders, sample_keys, strict=True)):
            if move:
                target = ctx.samples_dir / key
                if target.exists():  # left over by an interrupted request: same content
                    shutil.rmtree(target)
                os.rename(folder, target)
                path = target
            else:
                path = folder.resolve()
            conn.execute(
                "INSERT INTO samples (key, seq, path, test_only, owner) VALUES (?, ?, ?, ?, ?)",
                (key, seq + i, str(path), int(test_only), ctx.node_id),
            )
            answer.append({"pkhash": key, "path": str(path), "validated": True})
        _link(ctx, conn, dm_keys, sample_keys)
    return answer


def _link(ctx: Context, conn, dm_keys: Sequence[str], sample_keys: Sequence[str]) -> None:
    for dm in dm_keys:
        seq = ctx.store.next_seq(conn, max(len(sample_keys), 1))
        for i, key in enumerate(sample_keys):
            conn.execute(
                "INSERT OR IGNORE INTO sample_links (dataset_key, sample_key, seq) "
                "VALUES (?, ?, ?)",
                (dm, key, seq + i),
            )


# --- links ------------------------------------------------------------------------------


def _attach_objective(ctx: Context, dataset_key: str, objective_key: str, *, only_if_free: bool):
    conn = ctx.store.conn
    body = asset_body(ctx, "data_manager", dataset_key)
    if body is None:
        raise NotFound(f"no dataset with key {dataset_key}")
    current = body.get("objective_key") or ""
    if current == objective_key:
        return
    if current:
        if only_if_free:
            return
        raise BadRequest(f"dataset {dataset_key} is already linked to objective {current}")
    body["objective_key"] = objective_key
    conn.execute(
        "UPDATE assets SET body = ? WHERE kind = 'data_manager' AND key = ?",
        (dumps(body), dataset_key),
    )


def update_dataset(ctx: Context, dataset_key: str, objective_key: str) -> dict:
    """Link a dataset to an objective (``/data_manager/<key>/update_ledger/``)."""
    check_key(dataset_key, "dataset key")
    if asset_body(ctx, "data_manager", dataset_key) is None:
        raise NotFound(f"no dataset with key {dataset_key}")
    require_asset(ctx, "objective", objective_key, "objective_key")
    with ctx.store.transaction():
        _attach_objective(ctx, dataset_key, objective_key, only_if_free=False)
    return {"pkhash": dataset_key}


def bulk_update_data_samples(
    ctx: Context, data_manager_keys: Sequence[str], data_sample_keys: Sequence[str]
) -> dict:
    """Link data samples to datasets (``/data_sample/bulk_update/``)."""
    dm_keys = key_list({"k": list(data_manager_keys)}, "k", required=True)
    sample_keys = key_list({"k": list(data_sample_keys)}, "k", required=True)
    for key in dm_keys:
        require_asset(ctx, "data_manager", key, "data_manager_keys")
    with ctx.store.transaction() as conn:
        marks = ",".join("?" * len(sample_keys))
        found = {
            row["key"]
            for row in conn.execute(f"SELECT key FROM samples WHERE key IN ({marks})", sample_keys)
        }
        missing = [k for k in sample_keys if k not in found]
        if missing:
            raise BadRequest(f"data_sample_keys: no data samples with keys {missing}")
        _link(ctx, conn, dm_keys, sample_keys)
    return {"keys": list(data_sample_keys)}


def sample_folder(ctx: Context, key: str) -> Path:
    row = ctx.store.conn.execute("SELECT path FROM samples WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise NotFound(f"no data sample with key {key}")
    return Path(row["path"])
