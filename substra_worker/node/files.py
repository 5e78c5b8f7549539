"""The node's content-addressed file store: ``files/<2 hex>/<sha256>``.

A file's name is the sha256 of its bytes, which is also the key of the asset it
backs (opener, description, archive, model), so storing the same bytes twice
costs nothing. Files are written to a temporary name and renamed into place, so a
reader never sees a half-written file, even from another process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from substra_worker.node.keys import CHUNK, is_key


class FileStore:
    """Files named by their sha256 under ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the file of ``digest`` lives (whether or not it exists)."""
        if not is_key(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        digest = digest.lower()
        return self.root / digest[:2] / digest

    def exists(self, digest: str) -> bool:
        return is_key(digest) and self.path(digest).is_file()

    def put_file(self, source: str | os.PathLike) -> str:
        """Copy ``source`` into the store (hashing while copying); return its sha256."""
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            return self._commit(Path(tmp_name), digest.hexdigest())
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)

    def put_bytes(self, data: bytes) -> str:
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            return self._commit(Path(tmp_name), hashlib.sha256(data).hexdigest())
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)

    def _commit(self, tmp: Path, digest: str) -> str:
        target = self.path(digest)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        return digest

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def copy_to(self, digest: str, target: str | os.PathLike) -> Path:
        """Copy the stored file to ``target`` atomically (temporary name, then rename)."""
        target = Path(target)
        source = self.path(digest)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp_name)
            os.replace(tmp_name, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        return target
