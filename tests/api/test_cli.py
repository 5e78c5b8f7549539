"""`substra-worker api` as a real process: it prints its URL, serves, stops on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import requests

from substra_worker.settings import Settings

URL_LINE = re.compile(r"substra-worker api listening on (http://\S+)")


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBSTRA_WORKER_")}
    env["SUBSTRA_WORKER_REDIS_URL"] = settings.redis_url or ""
    env["SUBSTRA_WORKER_STATE_DIR"] = str(settings.state_dir)
    env.update(extra)
    return env


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    out = open(log, "wb")  # noqa: SIM115 - closed by the caller through the process
    process = subprocess.Popen(
        [sys.executable, "-m", "substra_worker", "api", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    out.close()
    deadline = time.monotonic() + 30
    while True:
        text = log.read_text()
        match = URL_LINE.search(text)
        if match:
            return process, match.group(1)
        assert process.poll() is None, text
        assert time.monotonic() < deadline, text
        time.sleep(0.05)


def test_api_command_serves_until_sigterm(idle_settings: Settings, tmp_path: Path):
    env = _env(idle_settings, SUBSTRA_WORKER_API_TOKEN="cli-token")
    process, url = _start(env, tmp_path / "api.log")
    try:
        headers = {"Authorization": "Bearer cli-token"}
        assert requests.get(f"{url}/jobs", headers=headers, timeout=10).status_code == 200
        assert requests.get(f"{url}/jobs", timeout=10).status_code == 401
        assert requests.get(f"{url}/", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    log = (tmp_path / "api.log").read_text()
    assert "cli-token" not in log  # the token is never printed or logged


def test_api_command_makes_a_token_file_when_none_is_set(idle_settings: Settings, tmp_path: Path):
    env = _env(idle_settings)
    process, url = _start(env, tmp_path / "api.log")
    try:
        token_file = Path(idle_settings.state_dir) / "api-token"
        assert f"API token in {token_file}" in (tmp_path / "api.log").read_text()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.get(f"{url}/jobs", headers=headers, timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    # the same token on the next start
    process, url = _start(env, tmp_path / "api2.log")
    try:
        assert requests.get(f"{url}/jobs", headers=headers, timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)


def test_api_command_refuses_to_run_without_redis(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBSTRA_WORKER_")}
    env["SUBSTRA_WORKER_API_TOKEN"] = "x" * 16
    env["SUBSTRA_WORKER_STATE_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "substra_worker", "api", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SUBSTRA_WORKER_REDIS_URL" in result.stderr
