"""How the job commands reach the queue: settings, a quick Redis check, job ids.

Redis comes from ``SUBSTRA_WORKER_REDIS_URL``, else from the ``runtime.json``
that a running ``substra-worker up`` publishes in the state folder. The check
is a single PING with a short timeout, so a missing or stopped Redis is one
clear line (exit code 3) instead of a long retry loop.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from substra_worker.cli.output import EXIT_JOB, EXIT_REDIS, EXIT_USAGE, CliError
from substra_worker.references import PREFIX as REF_PREFIX
from substra_worker.settings import Settings
from substra_worker.submitter import Submitter

PING_TIMEOUT = 3.0  # seconds: connect and answer timeout of the reachability check
PRODUCER = "cli"  # the producer jobs submitted from the command line are recorded as
_ID = re.compile(r"^[0-9a-f]{32}$")
_PREFIX = re.compile(r"^[0-9a-f]{4,31}$")


def redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def runtime_file(settings: Settings) -> Path:
    return Path(settings.state_dir) / "runtime.json"


def _from_runtime(settings: Settings) -> bool:
    """True when the Redis URL in use was published by ``substra-worker up``."""
    try:
        runtime = json.loads(runtime_file(settings).read_text())
    except (OSError, ValueError):
        return False
    return bool(runtime.get("redis_url")) and runtime.get("redis_url") == settings.redis_url


def load_settings() -> Settings:
    """This command's settings (read now, not cached: each command is one process)."""
    return Settings.from_env()


def check_redis(settings: Settings) -> None:
    """Raise ``CliError`` (exit 3) unless Redis is configured and answers PING."""
    import redis

    if not settings.redis_url:
        raise CliError(
            EXIT_REDIS,
            "no Redis configured and no `substra-worker up` running here: set "
            f"SUBSTRA_WORKER_REDIS_URL, or start `substra-worker up` (it publishes its Redis "
            f"in {runtime_file(settings)})",
            kind="NoRedis",
        )
    where = redacted(settings.redis_url)
    if _from_runtime(settings):
        where += f" (from {runtime_file(settings)}; is `substra-worker up` still running?)"
    try:
        client = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=PING_TIMEOUT, socket_timeout=PING_TIMEOUT
        )
    except ValueError as e:
        raise CliError(EXIT_REDIS, f"bad Redis URL {where}: {e}", kind="NoRedis") from e
    try:
        client.ping()
    except redis.exceptions.AuthenticationError as e:
        raise CliError(EXIT_REDIS, f"Redis at {where} refused us: {e}", kind="NoRedis") from e
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
        raise CliError(EXIT_REDIS, f"cannot reach Redis at {where}: {e}", kind="NoRedis") from e
    finally:
        client.close()


def open_submitter(producer: str = PRODUCER, settings: Settings | None = None) -> Submitter:
    """A ``Submitter`` on a Redis that was just seen answering."""
    settings = settings or load_settings()
    check_redis(settings)
    return Submitter(settings, producer=producer)


def resolve_job_id(submitter: Submitter, text: str) -> str:
    """A job id from ``text``: a full id, ``$job:<id>``, or a unique prefix of 4+ characters."""
    value = text.strip().lower()
    if value.startswith(REF_PREFIX):
        value = value[len(REF_PREFIX) :].split("#", 1)[0]
    if _ID.match(value):
        return value
    if not _PREFIX.match(value):
        raise CliError(
            EXIT_USAGE,
            f"job id: {text!r} is not a job id (32 hex characters, or a prefix of 4 or more)",
            kind="InvalidInput",
            errors={"job_id": ["not a job id"]},
        )
    store = submitter.store
    matches = [
        job_id
        for job_id, _ in store.redis.zscan_iter(
            f"{store.prefix}jobs", match=f"{value}*", count=1000
        )
    ]
    if not matches:
        raise CliError(EXIT_JOB, f"no job {value}", kind="JobNotFound")
    if len(matches) > 1:
        raise CliError(
            EXIT_USAGE,
            f"job id: {value!r} matches {len(matches)} jobs; give more characters",
            kind="InvalidInput",
            errors={"job_id": ["ambiguous prefix"]},
        )
    return matches[0]
