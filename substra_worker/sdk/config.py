"""The ``~/.substra`` profile file and the ``~/.substra-tokens`` token file.

Both are JSON objects keyed by profile name, in the reference client's format::

    ~/.substra         {"default": {"url": "http://...", "version": "0.0", "insecure": false}}
    ~/.substra-tokens  {"default": {"token": "..."}}

A profile must exist; a token need not (login, or a node without auth).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from substra_worker.sdk.exceptions import ConfigurationError

DEFAULT_VERSION = "0.0"


def _read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:
        raise ConfigurationError(f"{path} is not valid JSON: {e}") from e
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ConfigurationError(f"cannot read {path}: {e}") from e


def _token(profile_name: str, tokens_path: Path) -> str | None:
    try:
        tokens = _read_json(tokens_path)
    except FileNotFoundError:
        return None
    if not isinstance(tokens, dict):
        raise ConfigurationError(f"{tokens_path} must hold a JSON object of profiles")
    entry = tokens.get(profile_name)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise ConfigurationError(f"profile {profile_name!r} in {tokens_path} must be an object")
    return entry.get("token")


def load_profile(
    profile_name: str, config_path: str | Path, tokens_path: str | Path
) -> dict[str, Any]:
    """``{"url", "version", "insecure", "token"}`` of one profile.

    Raises ``ConfigurationError`` naming the file when the config file is
    missing or malformed, or the profile (and file) when the profile is absent
    or has no URL. A missing tokens file or profile gives ``token=None``.
    """
    config_file = Path(config_path).expanduser()
    tokens_file = Path(tokens_path).expanduser()
    try:
        config = _read_json(config_file)
    except FileNotFoundError as e:
        raise ConfigurationError(f"config file not found: {config_file}") from e
    if not isinstance(config, dict):
        raise ConfigurationError(f"{config_file} must hold a JSON object of profiles")
    profile = config.get(profile_name)
    if profile is None:
        known = ", ".join(sorted(config)) or "none"
        raise ConfigurationError(
            f"profile {profile_name!r} not found in {config_file} (profiles: {known})"
        )
    if not isinstance(profile, dict) or not profile.get("url"):
        raise ConfigurationError(f"profile {profile_name!r} in {config_file} has no 'url'")
    return {
        "url": profile["url"],
        "version": profile.get("version") or DEFAULT_VERSION,
        "insecure": bool(profile.get("insecure", False)),
        "token": _token(profile_name, tokens_file),
    }
