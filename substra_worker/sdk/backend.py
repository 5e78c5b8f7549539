"""The interface the Client's backends fill in: remote (HTTP) and debug (embedded node).

The Client validates input and then makes one call here; a backend returns the
protocol's answer shapes (camelCase GET bodies) and raises ``SDKException``
subclasses only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any


class Backend(ABC):
    """What a Client needs from the node it talks to."""

    @abstractmethod
    def login(self, username: str, password: str) -> str:
        """Exchange credentials for a token, use it from now on, and return it."""

    @abstractmethod
    def add(self, asset: str, data: dict, *, exist_ok: bool = False, local: bool = True) -> Any:
        """Create an asset from a validated input dict.

        ``asset`` is a public asset name. For ``data_sample``, ``data`` holds
        ``path`` (one sample: return the single answer) or ``paths`` (several:
        return the list). File assets and tuples return the GET of the new asset;
        a compute plan returns the create answer.
        """

    @abstractmethod
    def get(self, asset: str, key: str) -> dict:
        """The GET shape of one asset."""

    @abstractmethod
    def list(self, asset: str, filters: list[str] | None = None) -> list[dict]:
        """Assets matching ``filters`` (already flattened and de-duplicated)."""

    @abstractmethod
    def describe(self, asset: str, key: str) -> str:
        """The markdown description of an asset."""

    @abstractmethod
    def download(self, asset: str, key: str, destination_folder: str | Path) -> str:
        """Save the asset's file in ``destination_folder``; return the written path."""

    @abstractmethod
    def update_compute_plan(self, compute_plan_id: str, data: dict) -> dict:
        """Add tuples to a compute plan; return the plan."""

    @abstractmethod
    def cancel_compute_plan(self, compute_plan_id: str) -> dict:
        """Cancel a plan's pending and running tuples; return the plan."""

    @abstractmethod
    def link_dataset_with_objective(self, dataset_key: str, objective_key: str) -> Any:
        """Bind a dataset to an objective; return the node's answer."""

    @abstractmethod
    def link_dataset_with_data_samples(self, dataset_key: str, data_sample_keys: list[str]) -> Any:
        """Bind data samples to a dataset; return the node's answer."""

    @abstractmethod
    def leaderboard(self, objective_key: str, sort: str = "desc") -> dict:
        """The objective and its certified testtuples ordered by perf."""

    @abstractmethod
    def list_node(self) -> list[dict]:
        """The nodes of the network, ``[{"id", "isCurrent"}]``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and other resources."""
