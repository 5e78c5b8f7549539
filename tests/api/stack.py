"""The pieces the API tests (and ``screenshot.py``) run: the API server and an HTTP client for it.

Redis, the node and the Celery worker are the real ones of the other test
folders: ``BundledRedis``, ``tests.support.node_process.start_node`` and the
queue tests' ``WorkerProcess``.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import redis
import requests

from substra_worker.api.app import ApiServer
from substra_worker.settings import Settings
from tests import assets
from tests.support.stack import FAST

API_TOKEN = "api-token-for-tests"
FINAL = ("succeeded", "failed", "canceled")
PERMISSIONS = {"public": True, "authorized_ids": []}


def api_settings(redis_url: str, state_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "state_dir": state_dir,
        "api_token": API_TOKEN,
        "api_host": "127.0.0.1",
        "api_port": 0,
        **FAST,
    }
    values.update(overrides)
    return Settings(**values)


def flush(url: str) -> None:
    """Empty one Redis database of jobs and messages (kombu's bindings stay)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    keys = [k for k in client.keys("*") if not k.startswith("_kombu.binding")]
    if keys:
        client.delete(*keys)
    client.close()


class ApiClient:
    """Plain HTTP calls to one API server, with its token unless told otherwise."""

    def __init__(self, server: ApiServer, token: str | None = API_TOKEN):
        self.server = server
        self.url = server.url
        self.token = token
        self.session = requests.Session()

    def request(self, method: str, path: str, *, token: str | None = "default", **kw: Any):
        token = self.token if token == "default" else token
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers.setdefault("Authorization", f"Bearer {token}")
        return self.session.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def submit(self, operation: str, payload: dict, **fields: Any) -> dict:
        response = self.post("/jobs", json={"operation": operation, "payload": payload, **fields})
        assert response.status_code in (200, 201), response.text
        return response.json()

    def job(self, job_id: str) -> dict:
        response = self.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, job_id: str, states: tuple[str, ...] = FINAL, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['state']} after {timeout}s: {job}")
            time.sleep(0.1)


# --- real assets, with the keys the node will give them --------------------------------


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def dataset_payload(folder: Path, variant: int, name: str = "dataset") -> dict:
    """An add_dataset payload whose key (the opener's sha256) differs per ``variant``."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "name": f"{name}-{variant}",
        "description": str(assets.description_path(dest_dir=folder)),
        "type": "csv",
        "data_opener": str(assets.opener_path(folder, variant=variant)),
        "permissions": PERMISSIONS,
    }


def objective_payload(folder: Path, variant: int) -> dict:
    """An add_objective payload whose key (the description's sha256) differs per ``variant``."""
    folder.mkdir(parents=True, exist_ok=True)
    description = assets.description_path(
        f"# Objective {variant}\n\nMinimise the squared error.\n", dest_dir=folder
    )
    return {
        "name": f"objective-{variant}",
        "description": str(description),
        "metrics_name": assets.METRICS_NAME,
        "metrics": str(assets.metrics_archive(folder, variant=variant)),
        "permissions": PERMISSIONS,
    }
