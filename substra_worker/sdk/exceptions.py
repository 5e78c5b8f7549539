"""The Substra SDK exceptions, and the one place that maps a node answer to them.

``SDKException`` is the single root. Names and grouping follow the reference
generation's SDK, so code written against it catches the same classes.
"""

from __future__ import annotations

import json
from typing import Any


class SDKException(Exception):
    """Raised for every error of the Substra client."""


class InvalidInput(SDKException, ValueError):
    """Raised when an input dict does not match its schema; nothing was sent.

    ``errors`` maps each wrong field (dotted path) to its messages.
    """

    def __init__(self, message: str, errors: dict[str, Any] | None = None):
        super().__init__(message)
        self.errors = errors or {}


class ConfigurationError(SDKException):
    """Raised when a configuration file or profile is missing or malformed."""


class ExecutionError(SDKException):
    """Raised in debug mode when a tuple's step failed; ``log`` holds the tail of its output."""

    def __init__(self, message: str, key: str | None = None, log: str = ""):
        super().__init__(message)
        self.key = key
        self.log = log


class InvalidResponse(SDKException):
    """Raised when a 2xx answer is not the JSON the protocol promises."""

    def __init__(self, response: Any, msg: str):
        super().__init__(msg)
        self.response = response


class RequestException(SDKException):
    """Raised when a request could not be completed; base of the transport errors."""

    def __init__(self, msg: str, status_code: int | None = None):
        super().__init__(msg)
        self.msg = msg
        self.status_code = status_code

    @classmethod
    def from_request_exception(cls, e: Exception) -> RequestException:
        return cls(str(e), getattr(getattr(e, "response", None), "status_code", None))


class ConnectionError(RequestException):  # noqa: A001 - the SDK's own name
    """Raised when the node cannot be reached (refused, reset, DNS). Safe to retry."""


class Timeout(RequestException):
    """Raised when the node did not answer within the socket timeout. Safe to retry."""


class BadLoginException(RequestException):
    """Raised when the node refuses a login (400 or 401)."""


class HTTPError(RequestException):
    """Raised for an error status that has no more specific class."""

    def __init__(self, msg: str, status_code: int | None = None, body: Any = None):
        super().__init__(msg, status_code)
        self.body = body


class InvalidRequest(HTTPError):
    """Raised on 400: the node refused the request; ``errors`` holds its answer."""

    def __init__(self, msg: str, status_code: int | None = 400, body: Any = None):
        super().__init__(msg, status_code, body)
        self.errors = body


class AuthenticationError(HTTPError):
    """Raised on 401: no token, or a token the node does not accept."""


class AuthorizationError(HTTPError):
    """Raised on 403: the token is valid but the action is not allowed."""


class NotFound(HTTPError):
    """Raised on 404: no asset with that key."""


class RequestTimeout(HTTPError):
    """Raised on 408: the node accepted the request but did not confirm in time.

    ``pkhash`` is the key the node answered with, when it gave one.
    """

    def __init__(self, msg: str, status_code: int | None = 408, body: Any = None):
        super().__init__(msg, status_code, body)
        self.pkhash = _timeout_key(body)


class AlreadyExists(HTTPError):
    """Raised on 409: the asset exists; ``pkhash`` is its key (a list for data samples)."""

    def __init__(self, msg: str, status_code: int | None = 409, body: Any = None):
        super().__init__(msg, status_code, body)
        self.pkhash = body.get("pkhash") if isinstance(body, dict) else None


class InternalServerError(HTTPError):
    """Raised on 500: the node failed while handling the request."""


class GatewayUnavailable(HTTPError):
    """Raised on 502/503/504 once the in-call retry budget is spent."""


_BY_STATUS: dict[int, type[HTTPError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    403: AuthorizationError,
    404: NotFound,
    408: RequestTimeout,
    409: AlreadyExists,
    500: InternalServerError,
    502: GatewayUnavailable,
    503: GatewayUnavailable,
    504: GatewayUnavailable,
}


def _timeout_key(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    for name in ("computePlanID", "pkhash"):
        if body.get(name):
            return body[name]
    message = body.get("message")
    if isinstance(message, dict):
        return message.get("pkhash")
    return None


def parse_body(text: str | bytes | None) -> Any:
    """The JSON of an error answer, or the raw text when it is not JSON."""
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return text if isinstance(text, str) else text.decode("utf-8", "replace")


def error_from_status(status: int, body: Any) -> HTTPError:
    """The exception a node answer with this error ``status`` and ``body`` stands for.

    Used by the remote backend (HTTP answers) and the debug backend (node errors),
    so both raise the same classes for the same conditions.
    """
    cls = _BY_STATUS.get(status, HTTPError)
    message = body.get("message") if isinstance(body, dict) else body
    if not isinstance(message, str):
        message = json.dumps(message) if message is not None else ""
    text = f"{status}: {message}" if message else f"HTTP {status}"
    return cls(text, status, body)
