"""The Client a worker calls: built from the worker's own settings, never from the job.

A job names at most a ``~/.substra`` profile (its ``target``); the URL and the
token come from this worker's configuration files or ``SUBSTRA_WORKER_NODE_*``
settings. Clients are kept per process and target, so consecutive jobs reuse
their HTTP connections.
"""

from __future__ import annotations

import threading

from substra_worker.sdk.client import Client
from substra_worker.sdk.exceptions import ConfigurationError
from substra_worker.settings import Settings

_clients: dict[tuple[str | None, int], Client] = {}
_lock = threading.Lock()


def build_client(settings: Settings, target: str | None = None) -> Client:
    """A new Client for ``target`` (a profile name) or the configured node."""
    profile = target or settings.profile
    if profile:
        return Client.from_config_file(
            profile,
            config_path=settings.config_path,
            tokens_path=settings.tokens_path,
            token=settings.node_token if not target else None,
            retry_timeout=settings.retry_timeout,
        )
    if settings.node_url:
        client = Client(
            url=settings.node_url,
            token=settings.node_token,
            retry_timeout=settings.retry_timeout,
            version=settings.api_version,
            insecure=settings.insecure,
        )
        if can_login(settings, target):
            client.login(settings.node_username, settings.node_password)
        return client
    raise ConfigurationError(
        "this worker has no node configured: set SUBSTRA_WORKER_NODE_URL "
        "(and SUBSTRA_WORKER_NODE_TOKEN) or SUBSTRA_WORKER_PROFILE"
    )


def get_client(settings: Settings, target: str | None = None) -> Client:
    """The process's Client for ``target``, built on first use."""
    key = (target, id(settings))
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = build_client(settings, target)
        return client


def can_login(settings: Settings, target: str | None = None) -> bool:
    """Whether this worker holds credentials for the node of ``target``."""
    return bool(
        not (target or settings.profile)
        and settings.node_url
        and settings.node_username
        and settings.node_password
    )


def relogin(settings: Settings, target: str | None = None) -> Client:
    """A fresh Client for ``target``, logged in again (its token was refused)."""
    key = (target, id(settings))
    with _lock:
        old = _clients.pop(key, None)
    if old is not None:
        old.close()
    return get_client(settings, target)


def secrets_of(settings: Settings) -> tuple[str, ...]:
    """Values that must never be written to Redis or the logs."""
    return tuple(s for s in (settings.node_token, settings.node_password, settings.api_token) if s)


def close_clients() -> None:
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
