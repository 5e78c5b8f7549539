"""Every setting of substra-worker, in one place.

Each field is read from one ``SUBSTRA_WORKER_*`` environment variable; nothing
else in the package reads ``os.environ``. Units are in the field comments.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PREFIX = "SUBSTRA_WORKER_"


def _path_list(value: str) -> tuple[str, ...]:
    return tuple(p for p in value.split(os.pathsep) if p)


def _str_list(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """The configuration of one process: producer, worker, watcher, node or API."""

    # --- where state lives ---------------------------------------------------------
    state_dir: Path = Path(".substra-worker")  # node stores, bundled Redis data, logs

    # --- the Substra node that jobs target -----------------------------------------
    profile: str | None = None  # a ~/.substra profile name; wins over node_url
    node_url: str | None = None  # a node URL; with neither set, the embedded node is used
    node_token: str | None = field(default=None, repr=False)  # token for node_url (never queued)
    # credentials for node_url: workers log in themselves, and again when a token expires
    node_username: str | None = None
    node_password: str | None = field(default=None, repr=False)
    config_path: str = "~/.substra"  # profile file
    tokens_path: str = "~/.substra-tokens"  # token file
    request_timeout: float = 60.0  # seconds: socket timeout of one HTTP request
    retry_timeout: int = 300  # seconds: the client's 408 and 502/503/504 retry budget
    api_version: str = "0.0"  # Accept header version of the Substra protocol
    insecure: bool = False  # skip TLS verification of the node

    # --- the embedded node -----------------------------------------------------------
    node_id: str = "MyOrg1MSP"  # this node's id: owner/creator of the assets it registers
    node_host: str = "127.0.0.1"  # listen address of `substra-worker node`
    node_port: int = 8000  # listen port of `substra-worker node`
    node_users: tuple[str, ...] = field(default=(), repr=False)  # "name:password" entries
    data_roots: tuple[str, ...] = ()  # folders the node may read for local=False samples
    node_concurrency: int = 2  # tuples the node runs at once
    node_processes: int = 1  # processes serving the node's HTTP port (uploads use one core each)
    step_timeout: float = 3600.0  # seconds: time limit of one algo/metrics step
    python: str = sys.executable  # interpreter that runs algos, openers and metrics
    token_ttl: int = 86400  # seconds: lifetime of a node login token
    max_upload_bytes: int = 64 * 1024**3  # bytes: largest request body the node accepts

    # --- Redis and Celery ------------------------------------------------------------
    redis_url: str | None = field(default=None, repr=False)  # None: start the bundled redis-server
    worker_concurrency: int = 4  # Celery worker processes
    task_max_retries: int = 8  # attempts after the first one, for retryable errors
    retry_backoff: float = 1.0  # seconds: first retry delay, doubled each time, with jitter
    retry_backoff_max: float = 120.0  # seconds: cap of one retry delay
    task_soft_time_limit: int = 3600  # seconds: a job is asked to stop
    task_time_limit: int = 3900  # seconds: a job is killed
    visibility_timeout: int = 7200  # seconds: unacked message redelivery; above task_time_limit
    result_ttl: int = 7 * 86400  # seconds: retention of finished (non-failed) job records
    result_max_bytes: int = 64 * 1024  # bytes: largest node answer kept in a job record
    batch_size: int = 50  # paths per add_data_samples batch
    follow_interval: float = 2.0  # seconds: polling period of followed tuples and plans
    reference_poll_interval: float = 1.0  # seconds: re-check period of jobs waiting on references
    download_root: str | None = None  # download destinations must be inside it when set

    # --- watcher ---------------------------------------------------------------------
    watch_root: str = "watch_dirs"  # root folder of the watch channels
    quiet_period: float = 2.0  # seconds a folder must stay unchanged to be ready
    # suffix: a file `<folder><marker_name>` beside a folder marks it ready
    marker_name: str = ".ready"
    max_settle_wait: float = 3600.0  # seconds before an unsettled folder is recorded stalled
    rescan_interval: float = 30.0  # seconds between full rescans of the root
    batch_window: float = 1.0  # seconds to coalesce ready folders into one job
    polling: bool = False  # polling observer (network filesystems)

    # --- HTTP API ---------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8010
    api_token: str | None = field(
        default=None, repr=False
    )  # required on every API route but /healthz
    api_health_timeout: float = 5.0  # seconds /healthz waits for a worker to consume its canary

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``SUBSTRA_WORKER_*`` variables, then apply ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f, raw)
        values.update(overrides)
        _from_running_stack(values, Path(values.get("state_dir", cls.state_dir)))  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def node_state_dir(self) -> Path:
        return Path(self.state_dir) / "node"

    @property
    def redis_dir(self) -> Path:
        return Path(self.state_dir) / "redis"


def _convert(f: dataclasses.Field, raw: str) -> object:
    kind = str(f.type)
    if "tuple" in kind:
        return _path_list(raw) if f.name == "data_roots" else _str_list(raw)
    if kind.startswith("bool"):
        return _bool(raw)
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    if kind.startswith("Path"):
        return Path(raw)
    return raw


RUNTIME_FILE = "runtime.json"  # what `up` publishes in the state folder: no secrets
NODE_TOKEN_FILE = "node-token"  # the embedded node's token, mode 0600, while `up` runs


def _from_running_stack(values: dict[str, object], state_dir: Path) -> None:
    """Fill Redis and node settings left unset from a running ``up`` of this state folder.

    ``up`` publishes its Redis URL and embedded node URL in ``runtime.json`` and
    the node token in a private file, so the CLI, the examples and local tools
    of the same folder need no configuration.
    """
    import json

    try:
        runtime = json.loads((state_dir / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return
    if not values.get("redis_url") and runtime.get("redis_url"):
        values["redis_url"] = runtime["redis_url"]
    if values.get("profile") or values.get("node_url") or not runtime.get("node_url"):
        return
    values["node_url"] = runtime["node_url"]
    if not values.get("node_token"):
        with contextlib.suppress(OSError):
            values["node_token"] = (state_dir / NODE_TOKEN_FILE).read_text().strip() or None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings.from_env()
