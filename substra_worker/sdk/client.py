"""The Substra client of the reference document: one documented method per call.

Each method validates its input with ``substra_worker.schemas`` (nothing is sent
when the input is wrong) and is then one line into a backend: the remote one
speaks HTTP to a node, the debug one drives an embedded node in this process.
"""

from __future__ import annotations

import pathlib

from substra_worker import schemas
from substra_worker.sdk import assets
from substra_worker.sdk.backend import Backend
from substra_worker.sdk.exceptions import ConfigurationError


class Client:
    """Create the client.

    One client corresponds to one node (one profile). With ``debug=True`` every
    call runs on an embedded node in this process, with its state in the
    settings' state folder, and adding a tuple runs it before the call returns.
    Otherwise calls go over HTTP to ``url`` with ``token``.

    ``retry_timeout`` is the number of seconds a call keeps retrying a 408
    (with ``exist_ok``) or a 502/503/504 answer before giving up.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        retry_timeout: int = 300,
        version: str = "0.0",
        insecure: bool = False,
        debug: bool = False,
    ):
        self._url = url
        self._retry_timeout = retry_timeout
        self._version = version
        self._insecure = insecure
        self._debug = debug
        self._backend: Backend = self._make_backend(token)

    def _make_backend(self, token: str | None) -> Backend:
        if self._debug:
            from substra_worker.sdk.debug import DebugBackend

            return DebugBackend()
        from substra_worker.sdk.remote import RemoteBackend

        return RemoteBackend(
            self._url,
            token,
            retry_timeout=self._retry_timeout,
            version=self._version,
            insecure=self._insecure,
        )

    @property
    def backend(self) -> Backend:
        """The backend calls go to (remote HTTP or embedded debug node)."""
        return self._backend

    def close(self) -> None:
        """Close the client's connections."""
        self._backend.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- session -----------------------------------------------------------------------

    def login(self, username, password):
        """Login to a remote server.

        Exchanges ``username`` and ``password`` for a token, which the client
        uses from then on; returns the token. Raises ``BadLoginException`` when
        the node refuses the credentials.
        """
        return self._backend.login(username, password)

    @staticmethod
    def from_config_file(
        profile_name: str = "default",
        config_path: str | pathlib.Path = "~/.substra",
        tokens_path: str | pathlib.Path = "~/.substra-tokens",
        token: str | None = None,
        retry_timeout: int = 300,
        debug: bool = False,
    ) -> Client:
        """Returns a new Client configured with profile data from configuration files.

        ``config_path`` is a JSON file ``{"<profile>": {"url", "version", "insecure"}}``;
        ``tokens_path`` a JSON file ``{"<profile>": {"token"}}``. A missing tokens
        file or profile means no token; ``token``, when given, is used instead of
        any token found there. A missing profile raises ``ConfigurationError``.
        With ``debug=True`` the client runs on the embedded node instead.

        Args:
            profile_name: Name of the profile to load. Defaults to 'default'.
            config_path: Path to the configuration file. Defaults to '~/.substra'.
            tokens_path: Path to the tokens file. Defaults to '~/.substra-tokens'.
            token: Token to use for authentication (used instead of any token
                found at tokens_path). Defaults to None.
            retry_timeout: Number of seconds before attempting a retry call in case
                of timeout. Defaults to 5 minutes.
            debug: Run every call on the embedded node in this process.

        Returns:
            Client: The new client.
        """
        from substra_worker.sdk.config import load_profile

        if debug:  # the embedded node needs no profile: read one only if it is there
            try:
                profile = load_profile(profile_name, config_path, tokens_path)
            except ConfigurationError:
                profile = {"url": None}
        else:
            profile = load_profile(profile_name, config_path, tokens_path)
        return Client(
            url=profile["url"],
            token=token if token is not None else profile.get("token"),
            retry_timeout=retry_timeout,
            version=profile.get("version", "0.0"),
            insecure=profile.get("insecure", False),
            debug=debug,
        )

    # --- add ---------------------------------------------------------------------------

    def add_data_sample(self, data, local=True, exist_ok=False):
        """Create new data sample asset.

        ``data`` is a dict object with the following schema::

            {
                "path": str,
                "data_manager_keys": list[str],
                "test_only": bool,
            }

        The ``path`` must point to a directory representing the data sample
        content; all the directory content (recursively) is added.

        If ``local`` is true, ``path`` is a directory on the local filesystem: it
        is archived to a temporary file and streamed to the node, so its size is
        not limited by memory. If ``local`` is false, ``path`` is a directory on
        the node's filesystem, which the node must be allowed to read.

        If a data sample with the same content already exists, an
        ``AlreadyExists`` exception is raised. If ``exist_ok`` is true,
        ``AlreadyExists`` is ignored and ``{"pkhash": key}`` of the existing
        sample is returned.
        """
        data = schemas.validate("add_data_sample", data, local=local)
        return self._backend.add(assets.DATA_SAMPLE.name, data, exist_ok=exist_ok, local=local)

    def add_data_samples(self, data, local=True):
        """Create many data sample assets.

        ``data`` is a dict object with the following schema::

            {
                "paths": list[str],
                "data_manager_keys": list[str],
                "test_only": bool,
            }

        Creates multiple data samples through a single HTTP request. Each path
        points to a directory representing one data sample. For ``local``, see
        ``add_data_sample``. Every folder is sent (each streamed from a temporary
        archive). If data samples with the same content as any of the paths
        already exist, an ``AlreadyExists`` exception is raised whose ``pkhash``
        lists the keys.
        """
        data = schemas.validate("add_data_samples", data, local=local)
        return self._backend.add(assets.DATA_SAMPLE.name, data, local=local)

    def add_dataset(self, data, exist_ok=False):
        """Create new dataset asset.

        ``data`` is a dict object with the following schema::

            {
                "name": str,
                "description": str,      # path to a markdown file
                "type": str,
                "data_opener": str,      # path to the opener script
                "objective_key": str,
                "permissions": {
                    "public": bool,
                    "authorized_ids": list[str],
                },
                "metadata": dict
            }

        If a dataset with the same opener already exists, an ``AlreadyExists``
        exception is raised. If ``exist_ok`` is true, ``AlreadyExists`` is ignored
        and the existing asset is returned.
        """
        data = schemas.validate("add_dataset", data)
        return self._backend.add(assets.DATASET.name, data, exist_ok=exist_ok)

    def add_objective(self, data, exist_ok=False):
        """Create new objective asset.

        ``data`` is a dict object with the following schema::

            {
                "name": str,
                "description": str,      # path to a markdown file
                "metrics_name": str,
                "metrics": str,          # path to an archive: Dockerfile + metrics.py
                "test_data_manager_key": str,
                "test_data_sample_keys": list[str],
                "permissions": {
                    "public": bool,
                    "authorized_ids": list[str],
                },
                "metadata": dict
            }

        If an objective with the same description already exists, an
        ``AlreadyExists`` exception is raised. If ``exist_ok`` is true,
        ``AlreadyExists`` is ignored and the existing asset is returned.
        """
        data = schemas.validate("add_objective", data)
        return self._backend.add(assets.OBJECTIVE.name, data, exist_ok=exist_ok)

    def add_algo(self, data, exist_ok=False):
        """Create new algo asset.

        ``data`` is a dict object with the following schema::

            {
                "name": str,
                "description": str,      # path to a markdown file
                "file": str,             # path to an archive: Dockerfile + algo script
                "permissions": {
                    "public": bool,
                    "authorized_ids": list[str],
                },
                "metadata": dict
            }

        If an algo with the same archive file already exists, an
        ``AlreadyExists`` exception is raised. If ``exist_ok`` is true,
        ``AlreadyExists`` is ignored and the existing asset is returned.
        """
        data = schemas.validate("add_algo", data)
        return self._backend.add(assets.ALGO.name, data, exist_ok=exist_ok)

    def add_aggregate_algo(self, data, exist_ok=False):
        """Create new aggregate algo asset.

        ``data`` has the schema of ``add_algo``. Permissions accept both
        ``authorized_ids`` and ``authorizedIDs`` (the reference document uses
        the latter here).

        If an aggregate algo with the same archive file already exists, an
        ``AlreadyExists`` exception is raised. If ``exist_ok`` is true,
        ``AlreadyExists`` is ignored and the existing asset is returned.
        """
        data = schemas.validate("add_aggregate_algo", data)
        return self._backend.add(assets.AGGREGATE_ALGO.name, data, exist_ok=exist_ok)

    def add_composite_algo(self, data, exist_ok=False):
        """Create new composite algo asset.

        ``data`` has the schema of ``add_algo``.

        If a composite algo with the same archive file already exists, an
        ``AlreadyExists`` exception is raised. If ``exist_ok`` is true,
        ``AlreadyExists`` is ignored and the existing asset is returned.
        """
        data = schemas.validate("add_composite_algo", data)
        return self._backend.add(assets.COMPOSITE_ALGO.name, data, exist_ok=exist_ok)

    def add_traintuple(self, data, exist_ok=False):
        """Create new traintuple asset.

        ``data`` is a dict object with the following schema::

            {
                "algo_key": str,
                "data_manager_key": str,
                "train_data_sample_keys": list[str],
                "in_models_keys": list[str],
                "tag": str,
                "metadata": dict,
                "rank": int,
                "compute_plan_id": str,
            }

        An ``AlreadyExists`` exception is raised if a traintuple already exists
        that has the same ``algo_key``, ``data_manager_key``,
        ``train_data_sample_keys`` and ``in_models_keys`` and was created through
        the same node. If ``exist_ok`` is true, ``AlreadyExists`` is ignored and
        the existing asset is returned.
        """
        data = schemas.validate("add_traintuple", data)
        return self._backend.add(assets.TRAINTUPLE.name, data, exist_ok=exist_ok)

    def add_aggregatetuple(self, data, exist_ok=False):
        """Create new aggregatetuple asset.

        ``data`` is a dict object with the following schema::

            {
                "algo_key": str,
                "in_models_keys": list[str],
                "tag": str,
                "metadata": dict,
                "compute_plan_id": str,
                "rank": int,
                "worker": str,
            }

        An ``AlreadyExists`` exception is raised if an aggregatetuple already
        exists that has the same ``algo_key`` and ``in_models_keys`` and was
        created through the same node. If ``exist_ok`` is true,
        ``AlreadyExists`` is ignored and the existing asset is returned.
        """
        data = schemas.validate("add_aggregatetuple", data)
        return self._backend.add(assets.AGGREGATETUPLE.name, data, exist_ok=exist_ok)

    def add_composite_traintuple(self, data, exist_ok=False):
        """Create new composite traintuple asset.

        ``data`` is a dict object with the following schema::

            {
                "algo_key": str,
                "data_manager_key": str,
                "train_data_sample_keys": list[str],
                "in_head_model_key": str,
                "in_trunk_model_key": str,
                "out_trunk_model_permissions": {
                    "authorized_ids": list[str],
                },
                "tag": str,
                "metadata": dict,
                "rank": int,
                "compute_plan_id": str,
            }

        Output trunk models cannot be made public.

        An ``AlreadyExists`` exception is raised if a composite traintuple
        already exists that has the same ``algo_key``, ``data_manager_key``,
        ``train_data_sample_keys``, ``in_head_model_key`` and
        ``in_trunk_model_key`` and was created through the same node. If
        ``exist_ok`` is true, ``AlreadyExists`` is ignored and the existing asset
        is returned.
        """
        data = schemas.validate("add_composite_traintuple", data)
        return self._backend.add(assets.COMPOSITE_TRAINTUPLE.name, data, exist_ok=exist_ok)

    def add_testtuple(self, data, exist_ok=False):
        """Create new testtuple asset.

        ``data`` is a dict object with the following schema::

            {
                "objective_key": str,
                "data_manager_key": str,
                "traintuple_key": str,
                "test_data_sample_keys": list[str],
                "tag": str,
                "metadata": dict
            }

        An ``AlreadyExists`` exception is raised if a testtuple already exists
        that has the same ``traintuple_key``, ``objective_key``,
        ``data_manager_key`` and ``test_data_sample_keys`` and was created
        through the same node. If ``exist_ok`` is true, ``AlreadyExists`` is
        ignored and the existing asset is returned.
        """
        data = schemas.validate("add_testtuple", data)
        return self._backend.add(assets.TESTTUPLE.name, data, exist_ok=exist_ok)

    def add_compute_plan(self, data):
        """Create compute plan.

        ``data`` is a dict object with the following schema::

            {
                "traintuples": list[{
                    "traintuple_id": str,
                    "algo_key": str,
                    "data_manager_key": str,
                    "train_data_sample_keys": list[str],
                    "in_models_ids": list[str],
                    "tag": str,
                    "metadata": dict,
                }],
                "composite_traintuples": list[{
                    "composite_traintuple_id": str,
                    "algo_key": str,
                    "data_manager_key": str,
                    "train_data_sample_keys": list[str],
                    "in_head_model_id": str,
                    "in_trunk_model_id": str,
                    "out_trunk_model_permissions": {
                        "authorized_ids": list[str],
                    },
                    "tag": str,
                    "metadata": dict,
                }],
                "aggregatetuples": list[{
                    "aggregatetuple_id": str,
                    "algo_key": str,
                    "worker": str,
                    "in_models_ids": list[str],
                    "tag": str,
                    "metadata": dict,
                }],
                "testtuples": list[{
                    "objective_key": str,
                    "data_manager_key": str,
                    "test_data_sample_keys": list[str],
                    "traintuple_id": str,
                    "tag": str,
                    "metadata": dict,
                }],
                "clean_models": bool,
                "tag": str,
                "metadata": dict
            }

        The ids form a DAG (a cycle or an unknown id is refused); the answer's
        ``IDToKey`` maps them to tuple keys. Output trunk models of composite
        traintuples cannot be made public. Returns the compute plan.
        """
        data = schemas.validate("add_compute_plan", data)
        return self._backend.add(assets.COMPUTE_PLAN.name, data)

    # --- get ---------------------------------------------------------------------------

    def get_algo(self, key):
        """Get algo by key."""
        return self._backend.get(assets.ALGO.name, key)

    def get_compute_plan(self, key):
        """Get compute plan by key."""
        return self._backend.get(assets.COMPUTE_PLAN.name, key)

    def get_aggregate_algo(self, key):
        """Get aggregate algo by key."""
        return self._backend.get(assets.AGGREGATE_ALGO.name, key)

    def get_composite_algo(self, key):
        """Get composite algo by key."""
        return self._backend.get(assets.COMPOSITE_ALGO.name, key)

    def get_dataset(self, key):
        """Get dataset by key."""
        return self._backend.get(assets.DATASET.name, key)

    def get_objective(self, key):
        """Get objective by key."""
        return self._backend.get(assets.OBJECTIVE.name, key)

    def get_testtuple(self, key):
        """Get testtuple by key."""
        return self._backend.get(assets.TESTTUPLE.name, key)

    def get_traintuple(self, key):
        """Get traintuple by key."""
        return self._backend.get(assets.TRAINTUPLE.name, key)

    def get_aggregatetuple(self, key):
        """Get aggregatetuple by key."""
        return self._backend.get(assets.AGGREGATETUPLE.name, key)

    def get_composite_traintuple(self, key):
        """Get composite traintuple by key."""
        return self._backend.get(assets.COMPOSITE_TRAINTUPLE.name, key)

    # --- list --------------------------------------------------------------------------
    # filters: a list such as ["algo:name:ABC", "OR", "dataset:name:x"]; consecutive
    # items are ANDed, "OR" separates groups. A filter that is not a list is a ValueError.

    def list_algo(self, filters=None):
        """List algos."""
        return self._backend.list(assets.ALGO.name, filters)

    def list_compute_plan(self, filters=None):
        """List compute plans."""
        return self._backend.list(assets.COMPUTE_PLAN.name, filters)

    def list_aggregate_algo(self, filters=None):
        """List aggregate algos."""
        return self._backend.list(assets.AGGREGATE_ALGO.name, filters)

    def list_composite_algo(self, filters=None):
        """List composite algos."""
        return self._backend.list(assets.COMPOSITE_ALGO.name, filters)

    def list_data_sample(self, filters=None):
        """List data samples."""
        return self._backend.list(assets.DATA_SAMPLE.name, filters)

    def list_dataset(self, filters=None):
        """List datasets."""
        return self._backend.list(assets.DATASET.name, filters)

    def list_objective(self, filters=None):
        """List objectives."""
        return self._backend.list(assets.OBJECTIVE.name, filters)

    def list_testtuple(self, filters=None):
        """List testtuples."""
        return self._backend.list(assets.TESTTUPLE.name, filters)

    def list_traintuple(self, filters=None):
        """List traintuples."""
        return self._backend.list(assets.TRAINTUPLE.name, filters)

    def list_aggregatetuple(self, filters=None):
        """List aggregatetuples."""
        return self._backend.list(assets.AGGREGATETUPLE.name, filters)

    def list_composite_traintuple(self, filters=None):
        """List composite traintuples."""
        return self._backend.list(assets.COMPOSITE_TRAINTUPLE.name, filters)

    def list_node(self, *args, **kwargs):
        """List nodes."""
        return self._backend.list_node()

    # --- update / cancel / link ----------------------------------------------------------

    def update_compute_plan(self, compute_plan_id, data):
        """Update compute plan.

        ``data`` has the schema of ``add_compute_plan`` without ``clean_models``,
        ``tag`` and ``metadata``: lists of ``traintuples``,
        ``composite_traintuples``, ``aggregatetuples`` and ``testtuples`` added
        to the plan. Their ids may refer to ids already in the plan. Output trunk
        models of composite traintuples cannot be made public. Returns the plan.
        """
        args = schemas.validate_call(
            "update_compute_plan", {"compute_plan_id": compute_plan_id, "data": data}
        )
        return self._backend.update_compute_plan(args["compute_plan_id"], args["data"])

    def cancel_compute_plan(self, compute_plan_id):
        """Cancel execution of compute plan.

        Running steps are stopped and tuples not yet done become ``canceled``.
        Returns the plan.
        """
        schemas.validate_call("cancel_compute_plan", {"compute_plan_id": compute_plan_id})
        return self._backend.cancel_compute_plan(compute_plan_id)

    def link_dataset_with_objective(self, dataset_key, objective_key):
        """Link dataset with objective."""
        schemas.validate_call(
            "link_dataset_with_objective",
            {"dataset_key": dataset_key, "objective_key": objective_key},
        )
        return self._backend.link_dataset_with_objective(dataset_key, objective_key)

    def link_dataset_with_data_samples(self, dataset_key, data_sample_keys):
        """Link dataset with data samples."""
        args = schemas.validate_call(
            "link_dataset_with_data_samples",
            {"dataset_key": dataset_key, "data_sample_keys": data_sample_keys},
        )
        return self._backend.link_dataset_with_data_samples(
            args["dataset_key"], list(args["data_sample_keys"])
        )

    # --- files and descriptions ---------------------------------------------------------

    def download_dataset(self, key, destination_folder):
        """Download data manager resource.

        Download opener script in destination folder (as ``opener.py``).
        """
        return self._backend.download(assets.DATASET.name, key, destination_folder)

    def download_algo(self, key, destination_folder):
        """Download algo resource.

        Download algo package in destination folder (as ``algo.tar.gz``).
        """
        return self._backend.download(assets.ALGO.name, key, destination_folder)

    def download_aggregate_algo(self, key, destination_folder):
        """Download aggregate algo resource.

        Download aggregate algo package in destination folder
        (as ``aggregate_algo.tar.gz``).
        """
        return self._backend.download(assets.AGGREGATE_ALGO.name, key, destination_folder)

    def download_composite_algo(self, key, destination_folder):
        """Download composite algo resource.

        Download composite algo package in destination folder
        (as ``composite_algo.tar.gz``).
        """
        return self._backend.download(assets.COMPOSITE_ALGO.name, key, destination_folder)

    def download_objective(self, key, destination_folder):
        """Download objective resource.

        Download metrics archive in destination folder (as ``metrics.zip``).
        """
        return self._backend.download(assets.OBJECTIVE.name, key, destination_folder)

    def describe_algo(self, key):
        """Get algo description."""
        return self._backend.describe(assets.ALGO.name, key)

    def describe_aggregate_algo(self, key):
        """Get aggregate algo description."""
        return self._backend.describe(assets.AGGREGATE_ALGO.name, key)

    def describe_composite_algo(self, key):
        """Get composite algo description."""
        return self._backend.describe(assets.COMPOSITE_ALGO.name, key)

    def describe_dataset(self, key):
        """Get dataset description."""
        return self._backend.describe(assets.DATASET.name, key)

    def describe_objective(self, key):
        """Get objective description."""
        return self._backend.describe(assets.OBJECTIVE.name, key)

    def leaderboard(self, objective_key, sort="desc"):
        """Get objective leaderboard.

        The objective and its certified testtuples, ordered by perf: ``sort`` is
        ``"desc"`` (best first for a score) or ``"asc"``.
        """
        if sort not in ("asc", "desc"):
            raise ValueError(f"sort must be 'asc' or 'desc', not {sort!r}")
        return self._backend.leaderboard(objective_key, sort)


__all__ = ["Client"]
