"""The node's SQLite database: one file, safe for several threads and processes.

WAL journal (readers never block the writer), a generous busy timeout, one
connection per thread, and explicit ``BEGIN IMMEDIATE`` write transactions, so
two processes opening the same state folder serialize their writes instead of
failing, and claiming a tuple (``UPDATE ... WHERE status='todo'``) is atomic.

Tables:

- ``assets``: datasets (``data_manager``), objectives and the three algo kinds, as
  JSON bodies of what was registered;
- ``samples`` and ``sample_links``: data samples and their datasets;
- ``tuples`` (inputs as JSON, plus status, rank, plan, outputs, log, claim) and
  ``edges`` (child -> parent, with the role of the parent's model: model/head/trunk);
- ``plans``: compute plans (tag, metadata, clean_models, IDToKey, canceled flag);
- ``models``: output models (tuple, role model/head/trunk, hash) and whether
  ``clean_models`` deleted them (a file goes when every row of its hash is deleted).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000  # milliseconds a connection waits for another writer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS samples (
    key TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    path TEXT NOT NULL,
    test_only INTEGER NOT NULL,
    owner TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sample_links (
    dataset_key TEXT NOT NULL,
    sample_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (dataset_key, sample_key)
);
CREATE INDEX IF NOT EXISTS sample_links_sample ON sample_links (sample_key);
CREATE TABLE IF NOT EXISTS tuples (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    rank INTEGER NOT NULL,
    compute_plan_id TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL,
    result TEXT NOT NULL DEFAULT '{}',
    log TEXT NOT NULL DEFAULT '',
    claimed_by TEXT,
    heartbeat REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tuples_status ON tuples (status, rank, seq);
CREATE INDEX IF NOT EXISTS tuples_plan ON tuples (compute_plan_id, seq);
CREATE INDEX IF NOT EXISTS tuples_kind ON tuples (kind, seq);
CREATE TABLE IF NOT EXISTS edges (
    child TEXT NOT NULL,
    parent TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (child, parent, role)
);
CREATE INDEX IF NOT EXISTS edges_parent ON edges (parent);
CREATE TABLE IF NOT EXISTS plans (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    tuple_key TEXT NOT NULL,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tuple_key, role)
);
CREATE INDEX IF NOT EXISTS models_hash ON models (hash);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


class Store:
    """A connection per thread to ``node.db``, with write transactions and a sequence."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._closed = False
        self._migrate()

    # --- connections ----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # transactions are explicit
            check_same_thread=False,  # only so close() can close every thread's connection
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (created on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("the node store is closed")
            conn = self._connect()
            self._local.conn = conn
            self._local.depth = 0
            with self._lock:
                self._prune()
                self._connections[threading.current_thread()] = conn
        return conn

    def _prune(self) -> None:
        """Close the connections of threads that ended (short-lived runner threads)."""
        for thread in [t for t in self._connections if not t.is_alive()]:
            with contextlib.suppress(sqlite3.Error):
                self._connections.pop(thread).close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in self._connections.values():
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()

    # --- transactions ---------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``); nested calls join the outer one."""
        conn = self.conn
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        conn.execute("BEGIN IMMEDIATE")
        self._local.depth = 1
        try:
            yield conn
        except BaseException:
            self._local.depth = 0
            conn.execute("ROLLBACK")
            raise
        self._local.depth = 0
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several queries see one consistent state."""
        conn = self.conn
        if self._local.depth:
            yield conn
            return
        conn.execute("BEGIN")
        self._local.depth = 1
        try:
            yield conn
        finally:
            self._local.depth = 0
            conn.execute("COMMIT")

    def next_seq(self, conn: sqlite3.Connection, count: int = 1) -> int:
        """The first of ``count`` new values of the global creation sequence (in a transaction)."""
        row = conn.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
        first = (row["value"] if row else 0) + 1
        conn.execute(
            "INSERT INTO counters (name, value) VALUES ('seq', ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (first + count - 1,),
        )
        return first

    # --- schema -------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this node "
                    f"({SCHEMA_VERSION}); upgrade substra-worker"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
