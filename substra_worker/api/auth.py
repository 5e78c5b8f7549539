"""The API token: one shared secret, checked in constant time, never the node's token."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from substra_worker.sdk.exceptions import ConfigurationError
from substra_worker.settings import Settings

TOKEN_FILE = "api-token"  # in the state folder, when no token is configured
SCHEMES = ("bearer", "token")  # accepted Authorization schemes


def check_settings(settings: Settings) -> str:
    """The configured API token; refuses none and refuses the node's token."""
    token = settings.api_token
    if not token:
        raise ConfigurationError(
            "no API token: set SUBSTRA_WORKER_API_TOKEN (every route but /healthz needs it)"
        )
    if settings.node_token and hmac.compare_digest(token, settings.node_token):
        raise ConfigurationError("the API token must not be the node's token")
    return token


def token_from_header(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` (or ``Token <token>``) header."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in SCHEMES or not value.strip():
        return None
    return value.strip()


def token_matches(given: str | None, expected: str) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def ensure_token(settings: Settings) -> tuple[Settings, Path | None]:
    """Settings with an API token: the configured one, else one kept in the state folder.

    The generated token is written once to ``<state_dir>/api-token`` (mode 0600)
    and reused on later starts; its path is returned so that it can be shown
    (the token itself is never printed or logged).
    """
    if settings.api_token:
        return settings, None
    path = Path(settings.state_dir) / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
    token = path.read_text().strip()
    if not token:
        raise ConfigurationError(f"the API token file {path} is empty")
    return settings.replace(api_token=token), path
