"""The Substra client: ``Client`` and the SDK exceptions."""

from substra_worker.sdk import exceptions
from substra_worker.sdk.client import Client

__all__ = ["Client", "exceptions"]
