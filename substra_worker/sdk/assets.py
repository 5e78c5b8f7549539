"""The asset table: what the generic add/get/list/describe/download code needs per asset.

Client methods are named after the public asset names (``dataset``); the node
routes use the server names (``data_manager``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Asset:
    """One asset kind of the Substra protocol."""

    name: str  # public name, as in Client method names
    server: str  # route segment on the node
    files: tuple[tuple[str, str], ...] = ()  # (input dict field, multipart part name)
    download: tuple[str, str] | None = None  # (GET field holding storageAddress, file name)
    describable: bool = False  # has description.storageAddress
    is_tuple: bool = False


DATA_SAMPLE = Asset("data_sample", "data_sample")
DATASET = Asset(
    "dataset",
    "data_manager",
    files=(("data_opener", "data_opener"), ("description", "description")),
    download=("opener", "opener.py"),
    describable=True,
)
OBJECTIVE = Asset(
    "objective",
    "objective",
    files=(("metrics", "metrics"), ("description", "description")),
    download=("metrics", "metrics.zip"),
    describable=True,
)
ALGO = Asset(
    "algo",
    "algo",
    files=(("file", "file"), ("description", "description")),
    download=("content", "algo.tar.gz"),
    describable=True,
)
AGGREGATE_ALGO = Asset(
    "aggregate_algo",
    "aggregate_algo",
    files=ALGO.files,
    download=("content", "aggregate_algo.tar.gz"),
    describable=True,
)
COMPOSITE_ALGO = Asset(
    "composite_algo",
    "composite_algo",
    files=ALGO.files,
    download=("content", "composite_algo.tar.gz"),
    describable=True,
)
TRAINTUPLE = Asset("traintuple", "traintuple", is_tuple=True)
AGGREGATETUPLE = Asset("aggregatetuple", "aggregatetuple", is_tuple=True)
COMPOSITE_TRAINTUPLE = Asset("composite_traintuple", "composite_traintuple", is_tuple=True)
TESTTUPLE = Asset("testtuple", "testtuple", is_tuple=True)
COMPUTE_PLAN = Asset("compute_plan", "compute_plan")
NODE = Asset("node", "node")

ALL: tuple[Asset, ...] = (
    DATA_SAMPLE,
    DATASET,
    OBJECTIVE,
    ALGO,
    AGGREGATE_ALGO,
    COMPOSITE_ALGO,
    TRAINTUPLE,
    AGGREGATETUPLE,
    COMPOSITE_TRAINTUPLE,
    TESTTUPLE,
    COMPUTE_PLAN,
    NODE,
)
BY_NAME: dict[str, Asset] = {a.name: a for a in ALL}
BY_SERVER: dict[str, Asset] = {a.server: a for a in ALL}

TUPLE_KINDS: tuple[str, ...] = tuple(a.name for a in ALL if a.is_tuple)
ALGO_KINDS: tuple[str, ...] = ("algo", "aggregate_algo", "composite_algo")


def get(name: str) -> Asset:
    """The asset of a public or server name."""
    try:
        return BY_NAME.get(name) or BY_SERVER[name]
    except KeyError:
        raise ValueError(f"unknown asset kind: {name!r}") from None
