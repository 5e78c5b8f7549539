"""Errors of the embedded node, each carrying the HTTP status and body a real node answers.

The HTTP server turns them into ``{"message": ...}`` answers; the debug backend
turns them into SDK exceptions through ``sdk.exceptions.error_from_status``.
"""

from __future__ import annotations

from typing import Any


class NodeError(Exception):
    """Raised for every refusal of the node; ``status`` and ``body()`` are the HTTP answer."""

    status = 500

    def __init__(self, message: str, **extra: Any):
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}


class BadRequest(NodeError):
    """Raised when a request is malformed or refers to something invalid (400)."""

    status = 400


class Unauthorized(NodeError):
    """Raised when a request has no valid token (401)."""

    status = 401


class Forbidden(NodeError):
    """Raised when a valid request is not allowed, e.g. a path outside the data roots (403)."""

    status = 403


class NotFound(NodeError):
    """Raised when no asset has the key (404)."""

    status = 404


class Conflict(NodeError):
    """Raised when the asset already exists (409); ``pkhash`` is its key, a list for samples."""

    status = 409

    def __init__(self, message: str, pkhash: str | list[str]):
        super().__init__(message, pkhash=pkhash)
        self.pkhash = pkhash


class PayloadTooLarge(NodeError):
    """Raised when a request body exceeds the configured limit (413)."""

    status = 413
