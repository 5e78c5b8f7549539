"""What a failed attempt means for its job: retry later, or give up now.

The one place that sorts exceptions by the decision they drive. Retryable:
the node could not be reached or did not answer in time, or failed on its
side (connection errors, socket timeouts, 408, 500, 502/503/504). Permanent:
the request itself is wrong or not allowed (400, 401, 403, 404, a 409 the job
did not cause, invalid input), and anything unexpected.
"""

from __future__ import annotations

from typing import Any

from substra_worker.sdk import exceptions as sdk


class JobAttemptError(Exception):
    """Raised inside a task to end an attempt with a decided outcome."""

    retryable = False


class RetryableError(JobAttemptError):
    """Raised when the attempt failed for a reason that may go away: try again later."""

    retryable = True


class PermanentError(JobAttemptError):
    """Raised when trying again would fail the same way: the job fails."""

    retryable = False


RETRYABLE: tuple[type[BaseException], ...] = (
    sdk.ConnectionError,
    sdk.Timeout,
    sdk.RequestTimeout,
    sdk.InternalServerError,
    sdk.GatewayUnavailable,
)


def is_retryable(exc: BaseException) -> bool:
    """Whether the error of an attempt is worth another attempt."""
    if isinstance(exc, JobAttemptError):
        return exc.retryable
    if isinstance(exc, RETRYABLE):
        return True
    if isinstance(exc, sdk.HTTPError) and exc.status_code is not None:
        # statuses with no class of their own: the server side may recover
        return exc.status_code >= 500 or exc.status_code == 429
    return False


def describe(exc: BaseException, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The error to record: class, message (secrets masked), status, retryable."""
    cause = exc.__cause__ if isinstance(exc, JobAttemptError) and exc.__cause__ else exc
    message = str(exc) or type(cause).__name__
    error: dict[str, Any] = {
        "type": type(cause).__name__,
        "message": scrub(message, secrets),
        "retryable": is_retryable(exc),
    }
    status = getattr(cause, "status_code", None)
    if status is not None:
        error["status"] = status
    return error


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced, so no token reaches the status store."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
