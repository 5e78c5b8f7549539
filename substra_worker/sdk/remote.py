"""The remote backend: the Substra protocol over HTTP, as the reference client speaks it.

Every public method is a few lines over the asset table (``sdk.assets``): routes,
multipart part names and download fields come from there. What the wire carries
is exactly what the caller gave; HTTP details (session, headers, retries, status
codes) stay in ``sdk.transport``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from requests_toolbelt.multipart.encoder import MultipartEncoder

from substra_worker.sdk import archive, assets, filters
from substra_worker.sdk.backend import Backend
from substra_worker.sdk.exceptions import (
    AlreadyExists,
    ConfigurationError,
    InvalidResponse,
    NotFound,
    RequestTimeout,
)
from substra_worker.sdk.transport import Transport, backoff_delays

logger = logging.getLogger(__name__)

JSON_FIELD = "json"  # multipart form field holding the asset's JSON
SINGLE_SAMPLE_PART = "path"  # multipart part of a single uploaded data sample
KEY_FIELDS = ("pkhash", "key", "computePlanID")  # where a create answer holds the key


class RemoteBackend(Backend):
    """A Substra node reached over HTTP(S) with a token.

    ``retry_timeout`` (seconds) bounds both in-call retries: 502/503/504 answers,
    and a 408 on a single-key create (re-sent with ``exist_ok``). ``timeout``
    (seconds) bounds each socket operation; ``None`` takes the settings' value.
    """

    def __init__(
        self,
        url: str | None,
        token: str | None,
        *,
        retry_timeout: int | float | None = 300,
        version: str = "0.0",
        insecure: bool = False,
        timeout: float | None = None,
    ):
        if timeout is None:
            from substra_worker.settings import get_settings

            timeout = get_settings().request_timeout
        self._retry_timeout = retry_timeout or 0
        self._transport: Transport | None = None
        if url:
            self._transport = Transport(
                url,
                token,
                version=version,
                insecure=insecure,
                timeout=timeout,
                retry_timeout=self._retry_timeout,
            )

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            raise ConfigurationError(
                "no node URL is configured: pass url= to Client, use "
                "Client.from_config_file(profile), or debug=True for the embedded node"
            )
        return self._transport

    # --- session -------------------------------------------------------------------

    def login(self, username: str, password: str) -> str:
        answer = self.transport.login(username, password)
        token = answer.get("token") if isinstance(answer, dict) else None
        if not token:
            raise InvalidResponse(answer, "login answer carries no token")
        self.transport.token = token
        return token

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # --- reads ---------------------------------------------------------------------

    def get(self, asset: str, key: str) -> dict:
        spec = assets.get(asset)
        return self.transport.json("GET", self.transport.url(spec.server, key))

    def list(self, asset: str, filters: list[str] | None = None) -> list[dict]:
        spec = assets.get(asset)
        query = None
        if filters is not None:
            query = filters_query(filters)
        answer = self.transport.json("GET", self.transport.url(spec.server), query=query)
        return flatten(answer)

    def describe(self, asset: str, key: str) -> str:
        address = _storage_address(self.get(asset, key), "description")
        return self.transport.text(self.transport.absolute(address))

    def download(self, asset: str, key: str, destination_folder: str | Path) -> str:
        spec = assets.get(asset)
        if spec.download is None:
            raise ValueError(f"{spec.name} has no file to download")
        field, file_name = spec.download
        address = _storage_address(self.get(asset, key), field)
        destination = Path(destination_folder) / file_name
        self.transport.download(self.transport.absolute(address), destination)
        return str(destination)

    def leaderboard(self, objective_key: str, sort: str = "desc") -> dict:
        url = self.transport.url(assets.OBJECTIVE.server, objective_key, "leaderboard")
        return self.transport.json("GET", url, query=f"sort={sort}")

    def list_node(self) -> list[dict]:
        return self.transport.json("GET", self.transport.url(assets.NODE.server))

    # --- updates -------------------------------------------------------------------

    def update_compute_plan(self, compute_plan_id: str, data: dict) -> dict:
        body = {k: v for k, v in data.items() if v is not None}
        url = self.transport.url(assets.COMPUTE_PLAN.server, compute_plan_id, "update_ledger")
        return self.transport.json("POST", url, json=body)

    def cancel_compute_plan(self, compute_plan_id: str) -> dict:
        url = self.transport.url(assets.COMPUTE_PLAN.server, compute_plan_id, "cancel")
        return self.transport.json("POST", url)

    def link_dataset_with_objective(self, dataset_key: str, objective_key: str) -> Any:
        url = self.transport.url(assets.DATASET.server, dataset_key, "update_ledger")
        return self.transport.json("POST", url, form={"objective_key": objective_key})

    def link_dataset_with_data_samples(self, dataset_key: str, data_sample_keys: list[str]) -> Any:
        url = self.transport.url(assets.DATA_SAMPLE.server, "bulk_update")
        form = {"data_manager_keys": [dataset_key], "data_sample_keys": list(data_sample_keys)}
        return self.transport.json("POST", url, form=form)

    # --- creates -------------------------------------------------------------------

    def add(self, asset: str, data: dict, *, exist_ok: bool = False, local: bool = True) -> Any:
        spec = assets.get(asset)
        if spec is assets.DATA_SAMPLE:
            return self._add_data_samples(data, exist_ok=exist_ok, local=local)
        if spec is assets.COMPUTE_PLAN:
            return self._add_compute_plan(data)
        if spec.files:
            with _multipart(data, spec.files) as body:
                return self._create(spec, self._poster(spec, body=body), exist_ok)
        return self._create(spec, self._poster(spec, json=data), exist_ok)

    def _post(self, spec: assets.Asset, **kwargs: Any) -> Any:
        return self.transport.json("POST", self.transport.url(spec.server), **kwargs)

    def _poster(self, spec: assets.Asset, **kwargs: Any) -> Callable[[float | None], Any]:
        """A create POST to run (and re-run) with a retry deadline."""
        return lambda deadline: self._post(spec, deadline=deadline, **kwargs)

    def _create(
        self,
        spec: assets.Asset,
        post: Callable[[float | None], Any],
        exist_ok: bool,
        *,
        existing: Callable[[str], Any] | None = None,
        created: Callable[[Any], Any] | None = None,
    ) -> Any:
        """POST a single-key asset, with the protocol's ``exist_ok`` and 408 rules.

        A 409 returns the existing asset when ``exist_ok`` is set, or when an
        earlier attempt of this very call was answered 408 (the asset is then
        ours). A 408 is re-sent with backoff until ``retry_timeout`` is spent.
        """
        existing = existing or (lambda key: self.get(spec.name, key))
        created = created or (lambda answer: self.get(spec.name, created_key(answer)))
        deadline = time.monotonic() + self._retry_timeout
        delays = backoff_delays()
        timed_out = False
        while True:
            try:
                answer = post(deadline)
            except AlreadyExists as e:
                key = single_key(e.pkhash)
                if not (exist_ok or timed_out) or key is None:
                    raise
                logger.info("%s already exists: %s", spec.name, key)
                return existing(key)
            except RequestTimeout:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                timed_out = True
                delay = min(next(delays), remaining)
                logger.warning("%s create answered 408; re-sending in %.1fs", spec.name, delay)
                time.sleep(delay)
                continue
            return created(answer)

    def _add_compute_plan(self, data: dict) -> dict:
        """POST a plan; on 408 wait for the plan the node announced instead of re-sending.

        Re-sending would create a second plan (plan ids are random), so the
        announced ``computePlanID`` is polled until it exists or the retry
        budget is spent.
        """
        try:
            return self._post(assets.COMPUTE_PLAN, json=data)
        except RequestTimeout as e:
            plan = self._wait_for_plan(e.pkhash) if e.pkhash else None
            if plan is None:
                raise
            return plan

    def _wait_for_plan(self, compute_plan_id: str) -> dict | None:
        """The plan once the node has it, or ``None`` when ``retry_timeout`` is spent."""
        deadline = time.monotonic() + self._retry_timeout
        delays = backoff_delays()
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(next(delays), remaining))
            with contextlib.suppress(NotFound):
                return self.get(assets.COMPUTE_PLAN.name, compute_plan_id)
        return None

    def _add_data_samples(self, data: dict, *, exist_ok: bool, local: bool) -> Any:
        single = "path" in data
        spec = assets.DATA_SAMPLE
        with contextlib.ExitStack() as stack:
            if local:
                post = self._poster(spec, body=stack.enter_context(_sample_multipart(data)))
            else:
                post = self._poster(spec, json=data)
            if not single:
                return post(None)
            return self._create(
                spec,
                post,
                exist_ok,
                existing=lambda key: {"pkhash": key},
                created=first_sample,
            )


# --- answers ---------------------------------------------------------------------------


def created_key(answer: Any) -> str:
    """The key of a thin create answer: ``pkhash``, else ``key``, else ``computePlanID``."""
    if isinstance(answer, dict):
        for name in KEY_FIELDS:
            if answer.get(name):
                return answer[name]
    raise InvalidResponse(answer, f"create answer carries no key: {answer!r}")


def single_key(pkhash: Any) -> str | None:
    """The one key of a conflict (``pkhash`` may be a one-item list), else ``None``."""
    if isinstance(pkhash, list):
        return pkhash[0] if len(pkhash) == 1 and isinstance(pkhash[0], str) else None
    return pkhash if isinstance(pkhash, str) and pkhash else None


def first_sample(answer: Any) -> Any:
    """A single data sample's answer: the first item of the create list."""
    if isinstance(answer, list):
        if not answer:
            raise InvalidResponse(answer, "data sample create answered an empty list")
        return answer[0]
    return answer


def flatten(answer: Any) -> Any:
    """A list-of-lists answer (one list per OR group) as one list without duplicates."""
    if not isinstance(answer, list) or not all(isinstance(i, list) for i in answer):
        return answer
    seen: set[str] = set()
    items = []
    for group in answer:
        for item in group:
            identity = json.dumps(item, sort_keys=True)
            if identity not in seen:
                seen.add(identity)
                items.append(item)
    return items


def filters_query(value: Any) -> str | None:
    """The raw ``search=`` query of a filter list (``None`` for an empty list)."""
    if isinstance(value, list) and not value:
        return None
    return filters.query_string(value)


def _storage_address(asset: Any, field: str) -> str:
    try:
        address = asset[field]["storageAddress"]
    except (KeyError, TypeError) as e:
        raise InvalidResponse(asset, f"asset answer has no {field}.storageAddress") from e
    if not isinstance(address, str) or not address:
        raise InvalidResponse(asset, f"asset answer has no {field}.storageAddress")
    return address


# --- multipart bodies ------------------------------------------------------------------

PartSource = tuple[str, str, Path]  # (part name, file name sent, local path)


@contextlib.contextmanager
def _encoder_factory(
    fields: dict[str, Any], parts: list[PartSource]
) -> Iterator[Callable[[], tuple[MultipartEncoder, str]]]:
    """A factory of streamed multipart bodies: ``json`` field plus file parts.

    Each call opens the files afresh (a retry re-sends from the start); every
    file opened is closed when the block ends.
    """
    with contextlib.ExitStack() as stack:

        def build() -> tuple[MultipartEncoder, str]:
            items: list[tuple[str, Any]] = [(JSON_FIELD, json.dumps(fields))]
            for part, file_name, path in parts:
                items.append((part, (file_name, stack.enter_context(open(path, "rb")))))
            encoder = MultipartEncoder(items)
            return encoder, encoder.content_type

        yield build


@contextlib.contextmanager
def _multipart(
    data: dict, files: tuple[tuple[str, str], ...]
) -> Iterator[Callable[[], tuple[MultipartEncoder, str]]]:
    """The body of a file asset: the input dict without its paths, and one part per file."""
    file_fields = {field for field, _ in files}
    fields = {k: v for k, v in data.items() if k not in file_fields}
    parts = [
        (part, os.path.basename(str(data[field])), Path(data[field]))
        for field, part in files
        if data.get(field) is not None
    ]
    with _encoder_factory(fields, parts) as build:
        yield build


@contextlib.contextmanager
def _sample_multipart(data: dict) -> Iterator[Callable[[], tuple[MultipartEncoder, str]]]:
    """The body of local data samples: each folder zipped to a temporary file, then streamed.

    One sample goes in part ``path``; several go in one part each, named after
    the folder's leaf name (made unique when two folders share one).
    """
    fields = {k: v for k, v in data.items() if k not in ("path", "paths")}
    if "path" in data:
        folders = [data["path"]]
        names = [SINGLE_SAMPLE_PART]
    else:
        folders = list(data["paths"])
        names = sample_part_names(folders)
    with archive.zipped_folders(folders) as zips:
        parts = [(name, name, path) for name, path in zip(names, zips, strict=True)]
        with _encoder_factory(fields, parts) as build:
            yield build


def sample_part_names(folders: list[str | Path]) -> list[str]:
    """One part name per folder: its leaf name, suffixed when already taken.

    The node keys uploaded samples by part name, so two folders with the same
    leaf name must not share one (the second would be lost).
    """
    taken = {JSON_FIELD}
    names = []
    for folder in folders:
        base = Path(os.path.normpath(str(folder))).name or "sample"
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        names.append(name)
    return names
