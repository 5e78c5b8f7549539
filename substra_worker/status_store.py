"""Job records in Redis: the one place producers, workers, the CLI and the API read job state.

Layout (``sw:`` prefix)::

    sw:job:<id>              hash: id, operation, producer, state, envelope (JSON),
                             result, error, progress (JSON), attempts, dispatch, times
    sw:job:<id>:history      list: {"at", "state", "message"} per state change
    sw:job:<id>:attempts     list: {"number", "start", "end", "worker", "outcome",
                             "error_class", "error_message"} per attempt
    sw:job:<id>:keys         list: sample keys of a bulk add_data_samples, in path order
    sw:state:<state>         sorted set of ids by last update
    sw:op:<operation>        sorted set of ids by creation
    sw:opstate:<op>:<state>  sorted set of ids by last update
    sw:jobs                  sorted set of every id by creation
    sw:idem:<producer>:<key> the job id of an idempotency key
    sw:waiters:<id>          set of ids of waiting jobs that reference <id>
    sw:lease:<id>            the worker running <id> (expires)

Every state change is one Lua script: it checks the current state, moves the
id between indexes, appends history and sets the retention in one step, so two
workers (or a worker and a producer canceling) never both win. Finished jobs
expire after ``result_ttl`` seconds; failed jobs stay until retried or purged.

A worker's attempt costs two round trips: ``start_attempt`` (read the job, take
its lease, record ``running``) and the ``transition`` that records its outcome,
releases the lease and counts the jobs waiting on it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from substra_worker.jobs import FINAL_STATES, JobState
from substra_worker.sdk.exceptions import ConfigurationError
from substra_worker.settings import Settings

PREFIX = "sw:"
HISTORY_MAX = 1000  # entries kept per job
ALL_STATES = tuple(s.value for s in JobState)

_JSON_FIELDS = ("envelope", "result", "error", "progress")
_INT_FIELDS = ("attempts", "run_attempts", "dispatch")
_FLOAT_FIELDS = ("created_at", "updated_at", "started_at", "finished_at", "next_attempt_at")

_CREATE = """
-- KEYS: job, history, idempotency key (or a dummy)
-- ARGV: prefix, id, fields json, state, now, operation, history json, has idempotency key
local p = ARGV[1]
if ARGV[8] == '1' then
  local existing = redis.call('GET', KEYS[3])
  if existing and redis.call('EXISTS', p .. 'job:' .. existing) == 1 then
    return {0, existing}
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {2, ARGV[2]} end
local h = {}
for k, v in pairs(cjson.decode(ARGV[3])) do
  h[#h + 1] = k
  h[#h + 1] = v
end
redis.call('HSET', KEYS[1], unpack(h))
redis.call('ZADD', p .. 'state:' .. ARGV[4], ARGV[5], ARGV[2])
redis.call('ZADD', p .. 'op:' .. ARGV[6], ARGV[5], ARGV[2])
redis.call('ZADD', p .. 'opstate:' .. ARGV[6] .. ':' .. ARGV[4], ARGV[5], ARGV[2])
redis.call('ZADD', p .. 'jobs', ARGV[5], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[7])
if ARGV[8] == '1' then redis.call('SET', KEYS[3], ARGV[2]) end
return {1, ARGV[2]}
"""

# One state change, shared by the scripts below: check the state, move the id
# between indexes, write fields, finish/start an attempt, append history, set
# retention. K: job, history, attempts, keys. A: prefix, allowed states csv or
# '*', new state, now, history json, fields json, ttl (-1 keep, 0 persist, >0
# expire), bump dispatch, attempt json to start, attempt patch json, token,
# history max. Returns {status, state before, dispatch, counts}: counts holds
# the job's dispatch, attempts and run_attempts after the change.
_MOVE = """
local function move(K, A)
  local p = A[1]
  local r = redis.call('HMGET', K[1], 'state', 'last_tx', 'id', 'operation', 'dispatch',
                       'idem_key', 'attempts', 'run_attempts')
  local cur = r[1]
  if not cur then return {-1, '', 0} end
  local f = {id = r[3], operation = r[4], dispatch = tonumber(r[5] or '0'),
             attempts = tonumber(r[7] or '0'), run_attempts = tonumber(r[8] or '0')}
  if r[2] == A[11] then return {1, cur, f.dispatch, f} end
  if A[2] ~= '*' then
    local ok = false
    for s in string.gmatch(A[2], '[^,]+') do
      if s == cur then ok = true end
    end
    if not ok then return {0, cur, 0, f} end
  end
  local id, op, new = f.id, f.operation, A[3]
  if new ~= cur then
    redis.call('ZREM', p .. 'state:' .. cur, id)
    redis.call('ZREM', p .. 'opstate:' .. op .. ':' .. cur, id)
  end
  redis.call('ZADD', p .. 'state:' .. new, A[4], id)
  redis.call('ZADD', p .. 'opstate:' .. op .. ':' .. new, A[4], id)
  local h = {'state', new, 'updated_at', A[4], 'last_tx', A[11]}
  local gone = {}
  for k, v in pairs(cjson.decode(A[6])) do
    if v == '' then
      gone[#gone + 1] = k
    else
      h[#h + 1] = k
      h[#h + 1] = v
    end
    -- a count written here is the base of the increments below
    if k == 'dispatch' or k == 'attempts' or k == 'run_attempts' then f[k] = tonumber(v) or 0 end
  end
  if A[8] == '1' then
    f.dispatch = f.dispatch + 1
    h[#h + 1] = 'dispatch'
    h[#h + 1] = f.dispatch
  end
  if A[10] ~= '' then
    local last = redis.call('LINDEX', K[3], -1)
    if last then
      local a = cjson.decode(last)
      for k, v in pairs(cjson.decode(A[10])) do a[k] = v end
      redis.call('LSET', K[3], -1, cjson.encode(a))
    end
  end
  if A[9] ~= '' then
    f.attempts = f.attempts + 1
    f.run_attempts = f.run_attempts + 1
    h[#h + 1] = 'attempts'
    h[#h + 1] = f.attempts
    h[#h + 1] = 'run_attempts'
    h[#h + 1] = f.run_attempts
    local a = cjson.decode(A[9])
    a['number'] = f.attempts
    redis.call('RPUSH', K[3], cjson.encode(a))
  end
  if #gone > 0 then redis.call('HDEL', K[1], unpack(gone)) end
  redis.call('HSET', K[1], unpack(h))
  if A[5] ~= '' and redis.call('RPUSH', K[2], A[5]) > tonumber(A[12]) then
    redis.call('LTRIM', K[2], -tonumber(A[12]), -1)
  end
  local ttl = tonumber(A[7])
  if ttl ~= -1 then
    local all = {K[1], K[2], K[3], K[4]}
    if r[6] and r[6] ~= '' then all[#all + 1] = r[6] end
    for _, k in ipairs(all) do
      if ttl > 0 then redis.call('EXPIRE', k, ttl) else redis.call('PERSIST', k) end
    end
  end
  return {1, cur, f.dispatch, f}
end
"""

_TRANSITION = (
    _MOVE
    + """
-- KEYS: job, history, attempts, keys, lease, waiters
-- ARGV: 1-12 as move's A, 13 holder whose lease on the job to release ('' none)
local r = move(KEYS, ARGV)
if ARGV[13] ~= '' and redis.call('GET', KEYS[5]) == ARGV[13] then
  redis.call('DEL', KEYS[5])
end
return {r[1], r[2], r[3], redis.call('SCARD', KEYS[6])}
"""
)

# The start of an attempt in one round trip: read the state, take the job's
# lease (or take it over from a holder known dead), record `running` with the
# new attempt (and the previous attempt `lost` when it was running), and return
# what the attempt needs. A replay of the same call (same holder and token, after
# a lost reply) returns the attempt it started instead of starting another.
_START = (
    _MOVE
    + """
-- KEYS: job, history, attempts, keys, lease, waiters
-- ARGV: 1 prefix, 2 holder, 3 lease ms, 4 holder to take over from ('' none), 5 now,
--       6 history json, 7 history json when the previous attempt was lost,
--       8 fields json, 9 attempt json, 10 lost attempt patch json, 11 token, 12 history max
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {'missing'} end
if cur == 'succeeded' or cur == 'failed' or cur == 'canceled' then
  return {'final', cur, redis.call('SCARD', KEYS[6])}
end
if cur == 'waiting' then return {'waiting', cur} end
local held = redis.call('GET', KEYS[5])
if held and held ~= ARGV[2] and held ~= ARGV[4] then
  return {'busy', held, redis.call('PTTL', KEYS[5])}
end
if held ~= ARGV[2] then redis.call('SET', KEYS[5], ARGV[2], 'PX', ARGV[3]) end
local lost = cur == 'running'
-- a replay (same token) changes nothing and returns the attempt it started
local r = move(KEYS, {ARGV[1], '*', 'running', ARGV[5], lost and ARGV[7] or ARGV[6], ARGV[8],
                      '0', '0', ARGV[9], lost and ARGV[10] or '', ARGV[11], ARGV[12]})
local envelope = redis.call('HGET', KEYS[1], 'envelope') or ''
return {'running', cur, envelope, r[4].attempts, r[4].run_attempts}
"""
)

_SET_FIELDS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for k, v in pairs(cjson.decode(ARGV[1])) do redis.call('HSET', KEYS[1], k, v) end
return 1
"""

_APPEND_KEYS = """
local n = redis.call('LLEN', KEYS[1])
if n ~= tonumber(ARGV[1]) or #ARGV < 2 then return n end
for i = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
return redis.call('LLEN', KEYS[1])
"""

_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_REFRESH_LEASES = """
-- KEYS: leases; ARGV: 1 ms, then the holder of each lease
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[i + 1] then
    redis.call('PEXPIRE', k, ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""


@dataclass(frozen=True)
class Transition:
    """The outcome of a state change: applied or not, the state before, the dispatch number."""

    ok: bool
    previous: str | None
    dispatch: int = 0
    waiters: int = 0  # jobs waiting on this one (0: no reference to release)


@dataclass(frozen=True)
class Start:
    """What ``start_attempt`` found, and what the attempt needs when it started.

    ``outcome`` is ``running`` (the attempt started: ``envelope`` and the
    counts are set), ``missing`` (no record), ``final`` (finished already;
    ``waiters`` counts the jobs still listed as waiting on it), ``waiting``
    (for references), or ``busy`` (another ``holder`` has the lease, for
    ``lease_remaining`` more seconds).
    """

    outcome: str
    state: str | None = None
    envelope: dict[str, Any] | None = None
    attempts: int = 0  # attempts over the job's life, this one included
    run_attempts: int = 0  # attempts since the job was last queued by hand (retry)
    holder: str | None = None
    lease_remaining: float = 0.0
    waiters: int = 0


class _Refused(Exception):
    """Carries a refused password past redis-py's retry loop (see ``OutageRetry``)."""


class OutageRetry(Retry):
    """Retries lost connections and timeouts, never a refused password.

    redis-py's ``AuthenticationError`` is a ``ConnectionError``: without this, a
    wrong or missing password would be retried for minutes instead of failing.
    """

    def call_with_retry(self, do, fail, *args, **kwargs):  # noqa: D102 - redis-py's hook
        def guarded():
            try:
                return do()
            except (
                redis.exceptions.AuthenticationError,
                redis.exceptions.AuthorizationError,
            ) as e:
                raise _Refused() from e

        try:
            return super().call_with_retry(guarded, fail, *args, **kwargs)
        except _Refused as e:
            raise e.__cause__ from None


def connect(url: str | None) -> redis.Redis:
    """A Redis client for ``url`` that rides out short outages (a Redis restart)."""
    if not url:
        raise ConfigurationError(
            "no Redis configured: set SUBSTRA_WORKER_REDIS_URL (substra-worker up starts one)"
        )
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=30,
        retry=OutageRetry(ExponentialBackoff(cap=2.0, base=0.1), retries=12),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    )


def _now() -> float:
    return time.time()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class StatusStore:
    """Job records, their indexes, history and attempts, in one Redis database."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        result_ttl: int = 7 * 86400,
        result_max_bytes: int = 64 * 1024,
        prefix: str = PREFIX,
    ):
        self.redis = client
        self.result_ttl = result_ttl
        self.result_max_bytes = result_max_bytes
        self.prefix = prefix
        self._create = client.register_script(_CREATE)
        self._transition = client.register_script(_TRANSITION)
        self._set_fields = client.register_script(_SET_FIELDS)
        self._release_lease = client.register_script(_RELEASE_LEASE)
        self._append_keys = client.register_script(_APPEND_KEYS)
        self._refresh_leases = client.register_script(_REFRESH_LEASES)
        self._start = client.register_script(_START)

    @classmethod
    def from_settings(cls, settings: Settings) -> StatusStore:
        return cls(
            connect(settings.redis_url),
            result_ttl=settings.result_ttl,
            result_max_bytes=settings.result_max_bytes,
        )

    def close(self) -> None:
        self.redis.close()

    # --- key names ---------------------------------------------------------------------

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _job_keys(self, job_id: str) -> list[str]:
        base = self.job_key(job_id)
        return [base, f"{base}:history", f"{base}:attempts", f"{base}:keys"]

    def _script_keys(self, job_id: str) -> list[str]:
        """The job's keys, its lease and its waiters: the KEYS of the transition scripts."""
        return [*self._job_keys(job_id), self._lease_key(job_id), self._waiters_key(job_id)]

    def _idem_key(self, producer: str, key: str) -> str:
        return f"{self.prefix}idem:{producer}:{key}"

    def _waiters_key(self, job_id: str) -> str:
        return f"{self.prefix}waiters:{job_id}"

    def _lease_key(self, job_id: str) -> str:
        return f"{self.prefix}lease:{job_id}"

    # --- records -----------------------------------------------------------------------

    def create(
        self,
        envelope: dict[str, Any],
        state: JobState = JobState.QUEUED,
        *,
        message: str = "submitted",
        error: dict[str, Any] | None = None,
    ) -> tuple[str, bool]:
        """Record a new job; return ``(id, created)``.

        With an idempotency key already used by the same producer, nothing is
        written and the existing job's id is returned with ``created=False``.
        """
        job_id, status, _ = self._insert(envelope, state, message, error)
        return job_id, status != 0

    def create_record(
        self,
        envelope: dict[str, Any],
        state: JobState = JobState.QUEUED,
        *,
        message: str = "submitted",
        error: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any] | None, bool]:
        """Record a new job like ``create``; return ``(record, created)``.

        The record is what ``load`` would return right after the write, built
        from what was written (no read back). When the idempotency key names an
        existing job, that job is loaded (None if it vanished meanwhile).
        """
        job_id, status, (fields, history) = self._insert(envelope, state, message, error)
        if status == 1:
            return _record(fields, [history], [], []), True
        # 0: the job of the idempotency key; 2: a record with this id exists already
        return self.load(job_id), status != 0

    def _insert(
        self,
        envelope: dict[str, Any],
        state: JobState,
        message: str,
        error: dict[str, Any] | None,
    ) -> tuple[str, int, tuple[dict[str, str], str]]:
        """Write the record; return its id, the script's status and what was written."""
        now = _now()
        job_id = envelope["id"]
        producer = envelope.get("producer") or "default"
        idem = envelope.get("idempotency_key")
        idem_key = self._idem_key(producer, idem) if idem else ""
        fields = {
            "id": job_id,
            "operation": envelope["operation"],
            "producer": producer,
            "state": state.value,
            "target": envelope.get("target") or "",
            "idempotency_key": idem or "",
            "idem_key": idem_key,
            "envelope": _dumps(envelope),
            "created_at": repr(now),
            "updated_at": repr(now),
            "attempts": "0",
            "run_attempts": "0",
            # a queued job's first message carries dispatch number 1
            "dispatch": "1" if state is JobState.QUEUED else "0",
        }
        if error is not None:
            fields["error"] = _dumps(error)
            fields["finished_at"] = repr(now)
        history = _dumps({"at": now, "state": state.value, "message": message})
        keys = self._job_keys(job_id)
        status, found = self._create(
            keys=[keys[0], keys[1], idem_key or f"{self.prefix}idem:-"],
            args=[
                self.prefix,
                job_id,
                _dumps(fields),
                state.value,
                repr(now),
                envelope["operation"],
                history,
                "1" if idem else "0",
            ],
        )
        return str(found), int(status), (fields, history)

    def exists(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.job_key(job_id)))

    def state(self, job_id: str) -> JobState | None:
        value = self.redis.hget(self.job_key(job_id), "state")
        return JobState(value) if value else None

    def get_fields(self, job_id: str, *names: str) -> dict[str, Any]:
        values = self.redis.hmget(self.job_key(job_id), list(names))
        return {n: _decode_field(n, v) for n, v in zip(names, values, strict=True)}

    def load(self, job_id: str) -> dict[str, Any] | None:
        """The whole record as a JSON-friendly dict, or None when there is none."""
        keys = self._job_keys(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys[0])
        pipe.lrange(keys[1], 0, -1)
        pipe.lrange(keys[2], 0, -1)
        pipe.lrange(keys[3], 0, -1)
        raw, history, attempts, sample_keys = pipe.execute()
        if not raw:
            return None
        return _record(raw, history, attempts, sample_keys)

    def transition(
        self,
        job_id: str,
        to: JobState,
        *,
        allowed: Iterable[JobState] | None = None,
        message: str = "",
        fields: dict[str, Any] | None = None,
        dispatch: bool = False,
        start_attempt: dict[str, Any] | None = None,
        finish_attempt: dict[str, Any] | None = None,
        release_lease: str | None = None,
    ) -> Transition:
        """Move a job to ``to`` if its state is one of ``allowed`` (any state when None).

        ``fields`` are written with it (a value of None deletes the field; dicts
        and lists are stored as JSON). ``dispatch`` increments the dispatch
        number that the next message must carry. Retention follows the new
        state: finished jobs expire after ``result_ttl``, others never.
        ``release_lease`` names a lease holder: its lease on the job is released
        in the same step, applied or not. The result counts the job's waiters.
        """
        now = _now()
        encoded: dict[str, str] = {}
        for name, value in (fields or {}).items():
            if value is None:
                encoded[name] = ""
            elif name in _JSON_FIELDS:
                encoded[name] = _dumps(value)
            else:
                encoded[name] = value if isinstance(value, str) else repr(value)
        if to.final:
            encoded.setdefault("finished_at", repr(now))
        if to is JobState.SUCCEEDED or to is JobState.CANCELED:
            ttl = self.result_ttl
        elif to is JobState.FAILED:
            ttl = 0  # kept until retried or purged
        else:
            ttl = 0
        history = _dumps({"at": now, "state": to.value, "message": message})
        status, previous, number, waiters = self._transition(
            keys=self._script_keys(job_id),
            args=[
                self.prefix,
                "*" if allowed is None else ",".join(JobState(s).value for s in allowed),
                to.value,
                repr(now),
                history,
                _dumps(encoded),
                str(ttl),
                "1" if dispatch else "0",
                _dumps(start_attempt) if start_attempt else "",
                _dumps(finish_attempt) if finish_attempt else "",
                uuid.uuid4().hex,
                str(HISTORY_MAX),
                release_lease or "",
            ],
        )
        return Transition(int(status) == 1, previous or None, int(number), int(waiters))

    def start_attempt(
        self,
        job_id: str,
        holder: str,
        lease_ttl: float,
        *,
        attempt: dict[str, Any],
        message: str,
        lost: dict[str, Any],
        lost_message: str,
        take_over: str | None = None,
    ) -> Start:
        """Take the job's lease and record ``running`` with a new ``attempt``, in one step.

        Nothing is written unless the job is queued, retrying or running and its
        lease is free, already ``holder``'s, or held by ``take_over`` (a holder
        known dead). A job found ``running`` was delivered again after its
        worker stopped: its last attempt is patched with ``lost`` and the
        history says ``lost_message`` instead of ``message``.
        """
        now = _now()
        history = _dumps({"at": now, "state": JobState.RUNNING.value, "message": message})
        history_lost = _dumps({"at": now, "state": JobState.RUNNING.value, "message": lost_message})
        reply = self._start(
            keys=self._script_keys(job_id),
            args=[
                self.prefix,
                holder,
                int(lease_ttl * 1000),
                take_over or "",
                repr(now),
                history,
                history_lost,
                _dumps({"started_at": repr(now)}),
                _dumps(attempt),
                _dumps(lost),
                uuid.uuid4().hex,
                str(HISTORY_MAX),
            ],
        )
        outcome = reply[0]
        if outcome == "running":
            return Start(
                outcome,
                reply[1],
                json.loads(reply[2]) if reply[2] else {},
                int(reply[3]),
                int(reply[4]),
            )
        if outcome == "final":
            return Start(outcome, reply[1], waiters=int(reply[2]))
        if outcome == "busy":
            return Start(outcome, holder=reply[1], lease_remaining=max(0, int(reply[2])) / 1000)
        return Start(outcome, reply[1] if len(reply) > 1 else None)

    def set_fields(self, job_id: str, **fields: Any) -> bool:
        """Write fields of an existing record (progress, say); False when there is none."""
        encoded = {
            name: _dumps(value) if name in _JSON_FIELDS else str(value)
            for name, value in fields.items()
        }
        return bool(self._set_fields(keys=[self.job_key(job_id)], args=[_dumps(encoded)]))

    # --- results -----------------------------------------------------------------------

    def bounded_result(self, key: str | None, answer: Any, **extra: Any) -> dict[str, Any]:
        """The result to record: the key, extras, and the node's answer unless too large."""
        result: dict[str, Any] = {"key": key, **extra}
        text = _dumps(answer)
        if len(text.encode()) <= self.result_max_bytes:
            result["answer"] = answer
        else:
            result["answer"] = None
            result["truncated"] = True
            result["answer_bytes"] = len(text.encode())
        return result

    def append_keys(self, job_id: str, keys: list[str], expected: int) -> int:
        """Record the sample keys of one finished batch; return how many are recorded.

        Appends only when ``expected`` keys are recorded so far, so a command
        replayed after a lost reply does not record a batch twice.
        """
        return int(self._append_keys(keys=[self._job_keys(job_id)[3]], args=[expected, *keys]))

    def sample_keys(self, job_id: str) -> list[str]:
        return list(self.redis.lrange(self._job_keys(job_id)[3], 0, -1))

    # --- waiting on references ---------------------------------------------------------

    def add_waiter(self, reference: str, job_id: str) -> None:
        self.redis.sadd(self._waiters_key(reference), job_id)

    def waiters(self, reference: str) -> set[str]:
        return set(self.redis.smembers(self._waiters_key(reference)))

    def remove_waiter(self, reference: str, job_id: str) -> None:
        self.redis.srem(self._waiters_key(reference), job_id)

    # --- leases ------------------------------------------------------------------------

    def acquire_lease(self, job_id: str, holder: str, ttl: float) -> bool:
        return bool(self.redis.set(self._lease_key(job_id), holder, nx=True, px=int(ttl * 1000)))

    def lease_holder(self, job_id: str) -> str | None:
        return self.redis.get(self._lease_key(job_id))

    def refresh_leases(self, leases: dict[str, str], ttl: float) -> list[str]:
        """Extend each ``job id -> holder`` lease still held by its holder, in one step.

        Returns the ids of the jobs whose lease was lost (expired, or taken over).
        """
        if not leases:
            return []
        ids = list(leases)
        kept = self._refresh_leases(
            keys=[self._lease_key(i) for i in ids],
            args=[int(ttl * 1000), *(leases[i] for i in ids)],
        )
        return [i for i, ok in zip(ids, kept, strict=True) if not int(ok)]

    def lease_remaining(self, job_id: str) -> float:
        """Seconds until the lease of ``job_id`` expires (0 when there is none)."""
        return max(0, int(self.redis.pttl(self._lease_key(job_id)))) / 1000

    def clear_lease(self, job_id: str) -> None:
        self.redis.delete(self._lease_key(job_id))

    def release_lease(self, job_id: str, holder: str) -> None:
        self._release_lease(keys=[self._lease_key(job_id)], args=[holder])

    # --- queries -----------------------------------------------------------------------

    def list(
        self,
        state: JobState | str | None = None,
        operation: str | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Records newest first, filtered by state and operation."""
        if state is not None and operation:
            index = f"{self.prefix}opstate:{operation}:{JobState(state).value}"
        elif state is not None:
            index = f"{self.prefix}state:{JobState(state).value}"
        elif operation:
            index = f"{self.prefix}op:{operation}"
        else:
            index = f"{self.prefix}jobs"
        records: list[dict[str, Any]] = []
        start = offset
        page = max(limit, 50)
        while len(records) < limit:
            ids = self.redis.zrevrange(index, start, start + page - 1)
            if not ids:
                break
            start += len(ids)
            for job_id in ids:
                record = self.load(job_id)
                if record is None:
                    self.redis.zrem(index, job_id)  # expired: drop the stale entry
                    start -= 1
                    continue
                records.append(record)
                if len(records) == limit:
                    break
        return records

    def stats(self, by_operation: bool = False) -> dict[str, Any]:
        """Counts per state (and per operation and state when asked)."""
        self._trim_expired()
        pipe = self.redis.pipeline(transaction=False)
        for state in ALL_STATES:
            pipe.zcard(f"{self.prefix}state:{state}")
        counts = dict(zip(ALL_STATES, (int(n) for n in pipe.execute()), strict=True))
        if not by_operation:
            return counts
        from substra_worker.envelope import OPERATIONS

        pipe = self.redis.pipeline(transaction=False)
        pairs = [(op, s) for op in OPERATIONS for s in ALL_STATES]
        for op, s in pairs:
            pipe.zcard(f"{self.prefix}opstate:{op}:{s}")
        per_op: dict[str, dict[str, int]] = {}
        for (op, s), n in zip(pairs, pipe.execute(), strict=True):
            if n:
                per_op.setdefault(op, {})[s] = int(n)
        return {"states": counts, "operations": per_op}

    def _trim_expired(self) -> None:
        """Drop index entries of finished jobs whose records expired."""
        ceiling = _now() - self.result_ttl
        pipe = self.redis.pipeline(transaction=False)
        for state in (JobState.SUCCEEDED.value, JobState.CANCELED.value):
            pipe.zremrangebyscore(f"{self.prefix}state:{state}", "-inf", ceiling)
        pipe.execute()

    def purge(
        self,
        states: Iterable[JobState | str] = FINAL_STATES,
        older_than: float = 0.0,
    ) -> int:
        """Delete finished records (failed ones included) older than ``older_than`` seconds.

        Also drops index entries left by records that expired. Active jobs are
        never purged. Returns the number of records deleted.
        """
        deleted = 0
        ceiling = _now() - older_than
        for state in {JobState(s) for s in states}:
            if not state.final:
                raise ValueError(f"only finished jobs can be purged, not {state.value}")
            index = f"{self.prefix}state:{state.value}"
            for job_id in self.redis.zrangebyscore(index, "-inf", ceiling):
                deleted += self._delete(job_id, index)
        self._sweep_stale()
        return deleted

    def _delete(self, job_id: str, index: str) -> int:
        raw = self.redis.hmget(self.job_key(job_id), ["operation", "state", "idem_key"])
        operation, state, idem_key = raw
        pipe = self.redis.pipeline()
        if state is not None and JobState(state).final:
            pipe.delete(*self._job_keys(job_id), self._waiters_key(job_id))
            if idem_key:
                pipe.delete(idem_key)
            pipe.zrem(f"{self.prefix}jobs", job_id)
            pipe.zrem(f"{self.prefix}op:{operation}", job_id)
            pipe.zrem(f"{self.prefix}opstate:{operation}:{state}", job_id)
            pipe.zrem(f"{self.prefix}state:{state}", job_id)
        pipe.zrem(index, job_id)
        pipe.execute()
        return 1 if state is not None and JobState(state).final else 0

    def _sweep_stale(self) -> None:
        """Remove index members whose records are gone (expired finished jobs)."""
        for index in self.redis.scan_iter(match=f"{self.prefix}op*:*", count=500):
            self._sweep_index(index)
        for state in ALL_STATES:
            self._sweep_index(f"{self.prefix}state:{state}")
        self._sweep_index(f"{self.prefix}jobs")

    def _sweep_index(self, index: str) -> None:
        for chunk in _chunks(self.redis.zscan_iter(index, count=500), 500):
            ids = [job_id for job_id, _ in chunk]
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.exists(self.job_key(job_id))
            gone = [job_id for job_id, alive in zip(ids, pipe.execute(), strict=True) if not alive]
            if gone:
                self.redis.zrem(index, *gone)


def _chunks(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _record(
    raw: dict[str, str], history: list[str], attempts: list[str], sample_keys: list[str]
) -> dict[str, Any]:
    """The JSON-friendly record of a job from its stored hash and lists."""
    record = {name: _decode_field(name, value) for name, value in raw.items()}
    record.pop("last_tx", None)
    record.pop("idem_key", None)
    record["target"] = record.get("target") or None
    record["idempotency_key"] = record.get("idempotency_key") or None
    record["history"] = [json.loads(h) for h in history]
    record["attempts"] = [json.loads(a) for a in attempts]
    record["attempt_count"] = int(raw.get("attempts", 0))
    if record.get("result") is not None and record["operation"] == "add_data_samples":
        record["result"]["keys"] = sample_keys
    return record


def _decode_field(name: str, value: str | None) -> Any:
    if value is None or value == "":
        return None if name not in _INT_FIELDS else 0
    if name in _JSON_FIELDS:
        return json.loads(value)
    if name in _INT_FIELDS:
        return int(value)
    if name in _FLOAT_FIELDS:
        return float(value)
    return value
