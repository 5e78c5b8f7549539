"""Fixtures of the HTTP tests: a real `substra-worker node` process and raw-HTTP helpers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import assets
from tests.support.node_process import NodeProcess, start_node

ACCEPT = {"Accept": "application/json;version=0.0"}
PERMISSIONS = {"public": True, "authorized_ids": []}
FINAL_STATUSES = ("done", "failed", "canceled")


class Api:
    """Raw requests against one node, with its token (no client logic in between)."""

    def __init__(self, node: NodeProcess):
        self.node = node
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        """One keep-alive session per thread (a Session is not meant to be shared)."""
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    @property
    def url(self) -> str:
        return self.node.url

    def headers(self, token: str | None = "default") -> dict[str, str]:
        token = self.node.token if token == "default" else token
        headers = dict(ACCEPT)
        if token is not None:
            headers["Authorization"] = f"Token {token}"
        return headers

    def request(self, method: str, path: str, *, token: str | None = "default", **kw: Any):
        headers = {**self.headers(token), **kw.pop("headers", {})}
        url = path if path.startswith("http") else self.url + path
        return self.session.request(method, url, headers=headers, timeout=60, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def create(self, path: str, data: dict, files: dict[str, Path]) -> requests.Response:
        """A multipart create: ``json`` field plus one file part per entry."""
        handles = {part: open(p, "rb") for part, p in files.items()}  # noqa: SIM115
        try:
            return self.post(
                path,
                data={"json": json.dumps(data)},
                files={part: (Path(p).name, handles[part]) for part, p in files.items()},
            )
        finally:
            for handle in handles.values():
                handle.close()

    def wait_status(
        self, path: str, statuses: tuple[str, ...] = FINAL_STATUSES, timeout: float = 60
    ) -> dict:
        """GET ``path`` until its ``status`` is one of ``statuses``."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.get(path).json()
            if body.get("status") in statuses or time.monotonic() > deadline:
                return body
            time.sleep(0.2)


def wait_for(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the shared node may read local=False samples from."""
    return tmp_path_factory.mktemp("data-root")


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Iterator[NodeProcess]:
    """One node process shared by the route tests (each test registers its own assets)."""
    process = start_node(tmp_path_factory.mktemp("node-state"), data_roots=[data_root])
    yield process
    process.stop()


@pytest.fixture(scope="session")
def api(node: NodeProcess) -> Api:
    return Api(node)


@pytest.fixture(scope="session")
def files_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("asset-files")


_counter = iter(range(1, 1_000_000))


def unique() -> int:
    """A number no other call in this session gets: asset variants with fresh keys."""
    return next(_counter)


def add_dataset(api: Api, files_dir: Path, **data: Any) -> str:
    n = unique()
    body = {"name": f"dataset-{n}", "type": "csv", "permissions": PERMISSIONS, **data}
    response = api.create(
        "/data_manager/",
        body,
        {
            "data_opener": assets.opener_path(files_dir, variant=n),
            "description": assets.description_path(f"# dataset {n}\n", files_dir),
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["pkhash"]


def add_samples(api: Api, root: Path, dataset_key: str, n: int, *, test: bool = False) -> list[str]:
    """Upload ``n`` fresh sample folders (multipart, one part per folder); their keys."""
    folders = assets.make_sample_folders(root, n, test=test, seed=unique())
    handles = [open(_zip(folder), "rb") for folder in folders]  # noqa: SIM115
    try:
        response = api.post(
            "/data_sample/",
            data={"json": json.dumps({"data_manager_keys": [dataset_key], "test_only": test})},
            files={
                folder.name: (folder.name, h) for folder, h in zip(folders, handles, strict=True)
            },
        )
    finally:
        for handle in handles:
            handle.close()
    assert response.status_code == 201, response.text
    return [item["pkhash"] for item in response.json()]


def _zip(folder: Path) -> Path:
    import zipfile

    target = folder.with_suffix(".zip")
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return target


def add_objective(
    api: Api, files_dir: Path, dataset_key: str | None = None, sample_keys: list[str] = ()
) -> str:
    n = unique()
    body: dict[str, Any] = {
        "name": f"objective-{n}",
        "metrics_name": assets.METRICS_NAME,
        "permissions": PERMISSIONS,
    }
    if dataset_key:
        body["test_data_manager_key"] = dataset_key
        body["test_data_sample_keys"] = list(sample_keys)
    response = api.create(
        "/objective/",
        body,
        {
            "metrics": assets.metrics_archive(files_dir, variant=n),
            "description": assets.description_path(f"# objective {n}\n", files_dir),
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["pkhash"]


def add_algo(api: Api, files_dir: Path, kind: str = "algo", **options: Any) -> str:
    n = unique()
    server = assets.ASSET_KIND[kind]
    response = api.create(
        f"/{server}/",
        {"name": f"{kind}-{n}", "permissions": PERMISSIONS},
        {
            "file": assets.make_algo_archive(kind, files_dir, variant=n, **options),
            "description": assets.description_path(f"# {kind} {n}\n", files_dir),
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["pkhash"]
