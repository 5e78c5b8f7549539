"""Placeholder: replaced by the marshmallow schemas (issue A, item 6)."""

from __future__ import annotations

from typing import Any


def validate(operation: str, data: Any, *, local: bool = True) -> dict:
    """Validate the input dict of ``operation``; return the dict to send."""
    return dict(data)
