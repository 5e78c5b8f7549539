"""Asset keys, computed exactly as a Substra node of the substra-backend 0.1.x era does.

- algo (all three kinds): sha256 hex of the uploaded archive's bytes;
- dataset: sha256 of the opener file; objective: sha256 of the description file;
- data sample: sha256 of the concatenation of the sorted sha256 hex digests of every
  file of the folder, recursively (file names and folder layout are not part of it);
- tuple: sha256 of ``"<type>," + ",".join(sorted(parts))`` where the parts are, with
  absent ones left out (see ``tuple_key_parts``):

  ============================ ===========================================================
  type                         parts
  ============================ ===========================================================
  ``traintuple``               creator, algo key, data manager key, compute plan id,
                               train data sample keys..., in-model (parent tuple) keys...
  ``aggregatetuple``           creator, algo key, compute plan id, in-model keys...
  ``composite_traintuple``     creator, algo key, data manager key, compute plan id,
                               train data sample keys..., in-head-model key,
                               in-trunk-model key
  ``testtuple``                creator, objective key (in the algo slot), data manager key,
                               compute plan id (the tested tuple's), test data sample
                               keys..., tested tuple key (in the in-model slot)
  ============================ ===========================================================

  The data manager and samples of a testtuple are the effective ones: when the caller
  leaves them out, the objective's test dataset and samples, so a certified testtuple
  has one key whichever way it was requested.
- compute plan: a random 64-hex id.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1024 * 1024  # bytes read at a time when hashing files

_KEY = re.compile(r"^[0-9a-fA-F]{64}$")


def is_key(value: object) -> bool:
    """Whether ``value`` has the shape of a key: 64 hex characters."""
    return isinstance(value, str) and bool(_KEY.match(value))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file, read in chunks (never whole in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def folder_files(folder: str | os.PathLike) -> list[Path]:
    """Every file under ``folder``, recursively (symlinked files count, linked folders don't).

    Where links lead is not checked here: ``registry`` refuses, before hashing, the links
    of a server-path sample that resolve outside the node's data roots.
    """
    files = []
    for root, _dirs, names in os.walk(folder):
        files.extend(Path(root) / name for name in names)
    return files


def data_sample_key(folder: str | os.PathLike) -> str:
    """The key of a data-sample folder: sha256 of its files' sorted sha256 digests."""
    digests = sorted(sha256_file(path) for path in folder_files(folder))
    return sha256_bytes("".join(digests).encode())


def tuple_key(kind: str, parts: Iterable[str | None]) -> str:
    """sha256 of ``"<kind>," + ",".join(sorted(parts))``, empty parts left out."""
    present = sorted(p for p in parts if p)
    return sha256_bytes(f"{kind},{','.join(present)}".encode())


def tuple_key_parts(
    *,
    creator: str,
    algo_key: str,
    data_manager_key: str | None = None,
    compute_plan_id: str | None = None,
    sample_keys: Iterable[str] = (),
    in_model_keys: Iterable[str | None] = (),
) -> list[str]:
    """The parts of a tuple key in the order of the formula (sorting happens in ``tuple_key``)."""
    parts = [creator, algo_key, data_manager_key or "", compute_plan_id or ""]
    parts.extend(sample_keys)
    parts.extend(k or "" for k in in_model_keys)
    return [p for p in parts if p]


def new_compute_plan_id() -> str:
    """A random 64-hex compute plan id."""
    return secrets.token_hex(32)
