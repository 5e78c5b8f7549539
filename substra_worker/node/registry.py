"""Registering file assets and data samples, and linking them.

Datasets, objectives and algos keep their files in the content-addressed file
store; algo and metrics archives are also extracted once, safely, into
``cache/<key>/`` (which validates them at upload time: a bad archive or a
Dockerfile without a usable ENTRYPOINT is a 400 then, not a failed tuple later).
Data samples live in ``samples/<key>/`` when uploaded, or stay where they are
when registered from a server path inside the node's data roots.

What a sample folder may hold depends on where it comes from:

- an uploaded archive: regular files and folders only (``extract`` refuses links);
- a server path (``local=False``): the folder, each sub-folder ``multiple`` expands
  to, and every link inside it (to a file or a folder) must resolve inside a data
  root, else ``Forbidden`` naming it; the key covers files and links to files, not
  linked folders (which the algo still sees, hence the check);
- a local copy (``local_copy``, the debug backend's ``local=True``): the caller's own
  files, wherever links lead; links to files are copied as content and linked folders
  are left out, as the client's zip upload does.

In every case a broken link or a file that is not a regular one (fifo, socket,
device: reading them would block or never end) is a ``BadRequest`` naming it.
Data roots are checked when a sample is registered: whoever may write inside a
root may later change what its folders hold, so roots should be writable only by
people trusted with what the node can read.
"""

from __future__ import annotations

import os
import shutil
import stat
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
    tmp = _extract_to_temporary(ctx, source, key, label)
    return _publish(tmp, target)


def _extract_to_temporary(ctx: Context, source: Path, key: str, label: str) -> Path:
    """``source`` extracted (safely) into a fresh hidden folder of the cache."""
    ctx.cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = ctx.cache_dir / f".{key}.{uuid.uuid4().hex}"
    extract.safe_extract(source, tmp, label=label)
    return tmp


def _publish(tmp: Path, target: Path) -> Path:
    """Rename the extracted ``tmp`` to ``target``, unless someone got there first."""
    try:
        os.rename(tmp, target)
    except OSError:
        # another thread or process extracted it first: same bytes, keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise
    return target


def _validate_archive(ctx: Context, source: Path, key: str, label: str) -> None:
    """Extract the uploaded ``source`` and check its Dockerfile, before anything is stored.

    The checks run on a temporary folder that only becomes ``cache/<key>/`` once they
    pass, so a refused archive leaves nothing behind, in the cache or the file store.
    """
    from substra_worker.node.executor import entrypoint_script

    target = ctx.cache_dir / key
    # when the same bytes were accepted before, their folder is checked again, in place
    folder = target if target.is_dir() else _extract_to_temporary(ctx, source, key, label)
    try:
        entrypoint_script(folder)
    except BaseException as e:
        if folder is not target:
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(e, ValueError):
            raise BadRequest(f"{label}: {e}") from e
        raise
    if folder is not target:
        _publish(folder, target)


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
    metrics_hash = keys.sha256_file(metrics)
    _validate_archive(ctx, metrics, metrics_hash, "metrics")
    ctx.files.put_file(metrics)
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
    _validate_archive(ctx, archive, key, "file")
    ctx.files.put_file(archive)
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


def _outside_roots(reason: str) -> Forbidden:
    return Forbidden(f"{reason}; upload it (local=True) or configure a data root that contains it")


def _check_sample_folder(folder: Path, roots: Sequence[str | os.PathLike] | None) -> None:
    """Refuse what the node must not read in ``folder`` (see the module docstring).

    ``roots``: every link must resolve inside one of them (server paths); None: links
    may lead anywhere (the caller's own files, copied).
    """
    for parent, dirs, names in os.walk(folder):
        base = Path(parent)
        for name in dirs:  # os.walk lists linked folders here and does not enter them
            path = base / name
            if roots is not None and path.is_symlink() and not _inside_roots(path, roots):
                raise _outside_roots(f"{path} links to a folder outside the node's data roots")
        for name in names:
            path = base / name
            if roots is not None and path.is_symlink() and not _inside_roots(path, roots):
                raise _outside_roots(f"{path} links to a file outside the node's data roots")
            try:
                mode = path.stat().st_mode  # follows links: what would be read
            except OSError as e:
                what = "a broken link" if path.is_symlink() else "unreadable"
                raise BadRequest(f"{path} in the data sample folder is {what}") from e
            if not stat.S_ISREG(mode):
                raise BadRequest(
                    f"{path} in the data sample folder is not a regular file "
                    "(fifos, sockets and devices are refused)"
                )


def _copy_folder(source: Path, dest: Path) -> None:
    """Copy the files of ``source`` that an upload would carry (symlinked files as content)."""
    _check_sample_folder(source, None)
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
                        raise _outside_roots(f"{path} is not inside the node's data roots")
            folders = _expand_multiple(requested, bool(data.get("multiple")))
            if not local_copy:
                # again after expansion: a sub-folder may be a link out of the roots
                for folder in folders:
                    if not _inside_roots(folder, data_roots):
                        raise _outside_roots(f"{folder} resolves outside the node's data roots")
                    _check_sample_folder(folder, data_roots)
            else:
                for folder in folders:
                    dest = ctx.tmp_dir / f"sample-{uuid.uuid4().hex}"
                    _copy_folder(folder, dest)
                    staged.append(dest)
                folders = list(staged)
        try:
            sample_keys = [keys.data_sample_key(f) for f in folders]
        except OSError as e:
            raise BadRequest(f"a data sample folder cannot be read: {e}") from e
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
