"""substra-worker: feed a Substra node reliably, in the background."""

from substra_worker.sdk import Client

__version__ = "0.1.0.dev0"

__all__ = ["Client", "Submitter", "__version__"]


def __getattr__(name: str):
    # Lazy: importing the Client must not import Celery and Redis.
    if name == "Submitter":
        from substra_worker.submitter import Submitter

        return Submitter
    raise AttributeError(f"module 'substra_worker' has no attribute {name!r}")
