"""substra-worker: feed a Substra node reliably, in the background."""

from substra_worker.sdk import Client

__version__ = "0.1.0.dev0"

__all__ = ["Client", "__version__"]
