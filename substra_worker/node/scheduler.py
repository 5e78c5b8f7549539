"""Who runs which tuple, when: claims, parallel runs, cancellation, recovery.

A claim is one ``BEGIN IMMEDIATE`` transaction that moves the first ``todo`` tuple
(lowest rank, then oldest) to ``doing`` with a claim id unique to this run, so two
threads or two processes on the same state folder never run the same tuple, and a
late runner can never overwrite a newer claim's outcome.

While a step runs, its cancel check reads the tuple from the database: when it is
no longer ``doing`` under our claim (the plan was canceled, by this process or
another one), the step is killed and its outputs discarded. The same check keeps a
heartbeat; a ``doing`` tuple whose heartbeat stopped (its process died) is given
back to ``todo`` (or failed after ``MAX_ATTEMPTS`` runs) by ``recover_stale``.

Debug mode calls ``run_pending`` (run everything runnable now, in parallel up to
``concurrency``, until idle); a served node calls ``start``/``wake``/``stop``.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import traceback
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from substra_worker.node import compute, runner
from substra_worker.node.context import Context

log = logging.getLogger(__name__)

HEARTBEAT = 5.0  # seconds between heartbeats of a running tuple
STALE_AFTER = 120.0  # seconds without heartbeat before a doing tuple is presumed orphaned
MAX_ATTEMPTS = 3  # runs of a tuple interrupted by a dying process before it is failed
IDLE_POLL = 1.0  # seconds a background runner sleeps when nothing is runnable
SWEEP_EVERY = 30.0  # seconds between stale-claim sweeps of a background runner


class Scheduler:
    """Claims ``todo`` tuples and runs them with ``runner.run_tuple``."""

    def __init__(self, ctx: Context, concurrency: int = 2):
        self.ctx = ctx
        self.concurrency = max(1, int(concurrency))
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []

    # --- claims -----------------------------------------------------------------------

    def claim(self) -> tuple[sqlite3.Row, str] | None:
        """Atomically move the next ``todo`` tuple to ``doing``; return it and the claim id."""
        claim_id = f"{self.worker_id}:{uuid.uuid4().hex[:12]}"
        with self.ctx.store.transaction() as conn:
            row = conn.execute(
                "SELECT key FROM tuples WHERE status = 'todo' ORDER BY rank, seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE tuples SET status = 'doing', claimed_by = ?, heartbeat = ?, "
                "attempts = attempts + 1 WHERE key = ? AND status = 'todo'",
                (claim_id, time.time(), row["key"]),
            )
            claimed = conn.execute("SELECT * FROM tuples WHERE key = ?", (row["key"],)).fetchone()
        return claimed, claim_id

    def recover_stale(self, stale_after: float = STALE_AFTER) -> list[str]:
        """Give back (or fail) ``doing`` tuples whose runner stopped beating; return their keys."""
        limit = time.time() - stale_after
        recovered = []
        with self.ctx.store.transaction() as conn:
            rows = conn.execute(
                "SELECT key, attempts, claimed_by FROM tuples WHERE status = 'doing' "
                "AND (heartbeat IS NULL OR heartbeat < ?)",
                (limit,),
            ).fetchall()
            for row in rows:
                if row["attempts"] >= MAX_ATTEMPTS:
                    compute.mark_failed(
                        self.ctx,
                        conn,
                        row["key"],
                        row["claimed_by"],
                        f"the node process running this tuple stopped {row['attempts']} times",
                    )
                else:
                    compute.release(conn, row["key"], row["claimed_by"])
                recovered.append(row["key"])
        if recovered:
            self.wake()
        return recovered

    # --- one run ----------------------------------------------------------------------

    def _should_cancel(self, key: str, claim_id: str, abort: threading.Event):
        last_beat = [time.monotonic()]

        def should_cancel() -> bool:
            if abort.is_set():
                return True
            conn = self.ctx.store.conn
            if time.monotonic() - last_beat[0] >= HEARTBEAT:
                last_beat[0] = time.monotonic()
                with self.ctx.store.transaction():
                    conn.execute(
                        "UPDATE tuples SET heartbeat = ? WHERE key = ? AND claimed_by = ?",
                        (time.time(), key, claim_id),
                    )
            state = compute.status_of(conn, key)
            return state is None or state != ("doing", claim_id)

        return should_cancel

    def execute(self, row: sqlite3.Row, claim_id: str, abort: threading.Event) -> None:
        """Run a claimed tuple and record its outcome; never leaves it ``doing``."""
        key = row["key"]
        try:
            outcome = runner.run_tuple(self.ctx, row, self._should_cancel(key, claim_id, abort))
        except BaseException as e:
            outcome = runner.Outcome(
                False,
                f"the node failed running this tuple: {e!r}\n{traceback.format_exc()}"[-4096:],
            )
            self._record(key, claim_id, outcome, abort)
            if not isinstance(e, Exception):
                raise
            log.exception("tuple %s: unexpected error", key)
            return
        self._record(key, claim_id, outcome, abort)

    def _record(
        self, key: str, claim_id: str, outcome: runner.Outcome, abort: threading.Event
    ) -> None:
        deletable: list[str] = []
        kept = False
        with self.ctx.store.transaction() as conn:
            if abort is self._stopping and abort.is_set() and not outcome.ok:
                compute.release(conn, key, claim_id)  # the node stops: run it again next time
            elif outcome.ok:
                result = compute.mark_done(
                    self.ctx, conn, key, claim_id, outcome.result, outcome.log
                )
                kept = result is not None
                deletable = result or []
            else:
                reason = "interrupted" if abort.is_set() else outcome.error
                log_text = outcome.log if reason == outcome.error else f"{reason}\n{outcome.log}"
                compute.mark_failed(self.ctx, conn, key, claim_id, log_text)
        if outcome.ok and not kept:
            deletable = list(outcome.result.values())  # canceled meanwhile: drop its outputs
        self._delete_unused(deletable)
        self.wake()

    def _delete_unused(self, hashes: list) -> None:
        conn = self.ctx.store.conn
        for digest in hashes:
            if not isinstance(digest, str):
                continue
            used = conn.execute(
                "SELECT 1 FROM models WHERE hash = ? AND deleted = 0", (digest,)
            ).fetchone()
            if not used:
                self.ctx.files.delete(digest)

    # --- debug mode -------------------------------------------------------------------

    def run_pending(self) -> None:
        """Run every runnable tuple now, and what they unblock, until nothing is runnable."""
        self.recover_stale()
        abort = threading.Event()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="substra-node-run") as pool:
            running: set = set()
            try:
                while True:
                    while len(running) < self.concurrency and (claimed := self.claim()):
                        running.add(pool.submit(self.execute, *claimed, abort))
                    if not running:
                        break
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        future.result()
            except BaseException:
                abort.set()  # kill the running steps: they are recorded failed, never left doing
                wait(running)
                raise

    # --- served node ------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        self._stopping.clear()
        self.recover_stale()
        for i in range(self.concurrency):
            thread = threading.Thread(
                target=self._loop, name=f"substra-node-runner-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _loop(self) -> None:
        last_sweep = time.monotonic()
        while not self._stopping.is_set():
            try:
                if time.monotonic() - last_sweep >= SWEEP_EVERY:
                    last_sweep = time.monotonic()
                    self.recover_stale()
                claimed = self.claim()
            except sqlite3.Error:
                log.exception("claiming a tuple failed; retrying")
                claimed = None
            if claimed is not None:
                self.execute(*claimed, self._stopping)
                continue
            with self._cond:
                if not self._stopping.is_set():
                    self._cond.wait(IDLE_POLL)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout: float = 10) -> None:
        """Stop the background runners; running steps are killed and will run again."""
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)
