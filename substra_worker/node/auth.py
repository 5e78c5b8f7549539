"""Token authentication of the node's HTTP protocol.

Users are configured (``--user NAME:PASSWORD`` or ``settings.node_users``),
never read from a request URL. ``/api-token-auth/`` exchanges a user's
credentials for a random token; only the token's sha256 is stored, with its
expiry, in an SQLite file of the node state folder, so tokens survive a
restart and a copy of the file does not reveal them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from substra_worker.node.errors import BadRequest, Unauthorized

TOKEN_SCHEME = "token"
BAD_CREDENTIALS = "Unable to log in with provided credentials."

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
)
"""


def parse_users(entries: Iterable[str]) -> dict[str, str]:
    """Map user names to passwords from ``NAME:PASSWORD`` entries.

    Raises ``ValueError`` on a malformed entry; the message never quotes the password.
    """
    users: dict[str, str] = {}
    for number, entry in enumerate(entries, start=1):
        name, sep, password = entry.partition(":")
        name = name.strip()
        if not sep or not name or not password:
            raise ValueError(
                f"user entry #{number} must be NAME:PASSWORD with both parts non-empty"
            )
        users[name] = password
    return users


def hash_token(token: str) -> str:
    """The form a token is stored in."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """Hashed tokens with their expiry, in SQLite; safe to share between threads."""

    def __init__(self, db_path: str | Path, ttl: float):
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.db_path, timeout=30, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)

    def issue(self, username: str) -> tuple[str, float]:
        """Create a token for ``username``; return it with its expiry (epoch seconds)."""
        token = secrets.token_hex(20)
        now = time.time()
        expires_at = now + self.ttl
        with self._lock, self._db:
            self._db.execute("DELETE FROM tokens WHERE expires_at <= ?", (now,))
            self._db.execute(
                "INSERT INTO tokens (token_hash, username, created_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (hash_token(token), username, now, expires_at),
            )
        return token, expires_at

    def lookup(self, token: str) -> tuple[str, float] | None:
        """The user and expiry of a stored token, or None when it is unknown."""
        digest = hash_token(token)
        with self._lock:
            row = self._db.execute(
                "SELECT token_hash, username, expires_at FROM tokens WHERE token_hash = ?",
                (digest,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[0], digest):
            return None
        return row[1], row[2]

    def revoke(self, token: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM tokens WHERE token_hash = ?", (hash_token(token),))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Authenticator:
    """Checks credentials and ``Authorization: Token <token>`` headers."""

    def __init__(self, users: Mapping[str, str], store: TokenStore):
        self._users = dict(users)
        self.store = store

    def login(self, username: str, password: str) -> dict:
        """The login answer ``{"token", "expires_at"}``; BadRequest on bad credentials."""
        expected = self._users.get(username)
        # compare against something even for unknown users, so timing does not tell them apart
        reference = expected if expected is not None else secrets.token_hex(16)
        matches = hmac.compare_digest(password.encode("utf-8"), reference.encode("utf-8"))
        if expected is None or not matches:
            raise BadRequest(BAD_CREDENTIALS)
        token, expires_at = self.store.issue(username)
        return {"token": token, "expires_at": _isoformat(expires_at)}

    def authenticate(self, authorization: str | None) -> str:
        """The user an ``Authorization`` header belongs to; Unauthorized otherwise."""
        if not authorization:
            raise Unauthorized("Authentication credentials were not provided.")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != TOKEN_SCHEME or not token or " " in token:
            raise Unauthorized("Invalid token header: expected 'Authorization: Token <token>'.")
        found = self.store.lookup(token)
        if found is None:
            raise Unauthorized("Invalid token.")
        username, expires_at = found
        if expires_at <= time.time():
            self.store.revoke(token)
            raise Unauthorized("Token has expired.")
        if username not in self._users:
            raise Unauthorized("Invalid token.")
        return username

    def close(self) -> None:
        self.store.close()


def _isoformat(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
