"""The Procfile run by honcho: node, worker and watcher register a dropped folder, then stop.

honcho (PyPI) is a test dependency: locally the test is skipped without it, in
CI (``CI=true``) it fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from substra_worker.node.keys import data_sample_key
from substra_worker.redis_server import BundledRedis, free_port
from substra_worker.sdk import Client
from tests.assets import SRC, make_sample_folders
from tests.ops.conftest import REPO, VENV_BIN, clean_env, in_ci, wait_until
from tests.support.node_process import NodeProcess

USER, PASSWORD = "ops", "procfile-smoke-password"


def require_honcho() -> None:
    if importlib.util.find_spec("honcho") is None:
        if in_ci():
            pytest.fail("honcho is not installed: it is a test dependency")
        pytest.skip("honcho is not installed")


def login_once(state, port: int) -> str:
    """A node token, issued by the node of ``state`` before honcho starts it again.

    Tokens are kept (hashed) in the node's state folder, so the worker can be
    given one when it starts, as an operator would put it in ``.env``.
    """
    node = NodeProcess(
        state_dir=state, users=(f"{USER}:{PASSWORD}",), data_roots=(), env=clean_env(), port=port
    )
    node.start()
    try:
        return node.token
    finally:
        node.stop()


@pytest.mark.timeout(180)
def test_honcho_runs_the_procfile_registers_a_folder_and_stops_cleanly(tmp_path):
    require_honcho()
    redis = BundledRedis(tmp_path / "redis")
    redis.start()
    state, root, app = tmp_path / "state", tmp_path / "watch", tmp_path / "app"
    app.mkdir()
    (app / "empty.env").write_text("")
    port = free_port()
    token = login_once(state, port)

    # Given a watch root with a channel that describes its dataset
    channel = root / "smoke"
    channel.mkdir(parents=True)
    (channel / "opener.py").write_bytes((SRC / "opener.py").read_bytes())
    (channel / "description.md").write_text("# procfile smoke\n")
    (channel / "channel.json").write_text(
        json.dumps(
            {
                "dataset": {
                    "name": "procfile smoke",
                    "type": "csv",
                    "data_opener": "opener.py",
                    "description": "description.md",
                    "permissions": {"public": True, "authorized_ids": []},
                }
            }
        )
    )
    env = clean_env(
        state_dir=state,
        node_host="127.0.0.1",
        node_port=port,
        node_users=f"{USER}:{PASSWORD}",
        node_url=f"http://127.0.0.1:{port}",
        node_token=token,
        watch_root=root,
        quiet_period=0.5,
        batch_window=0.2,
        worker_concurrency=1,
    )
    env["REDIS_URL"] = redis.url  # the Procfile's fallback, as hosting platforms name it
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    log = open(tmp_path / "honcho.log", "wb")  # noqa: SIM115 - closed below
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "-f", str(REPO / "Procfile"), "-d", str(app)]
        + ["-e", str(app / "empty.env"), "start"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = Client(url=f"http://127.0.0.1:{port}", token=token)
    try:
        output = lambda: (tmp_path / "honcho.log").read_text(errors="replace")  # noqa: E731
        wait_until(lambda: "watching" in output(), 60, "the watcher to start")
        wait_until(lambda: " ready." in output(), 60, "the worker to be ready")

        # When a sample folder is dropped into the channel (moved in whole)
        folder = make_sample_folders(tmp_path / "outside", 1, prefix="procfile")[0]
        os.rename(folder, channel / folder.name)

        # Then it becomes a data sample of the channel's dataset on the node
        def registered() -> list:
            try:
                return [s["key"] for s in client.list_data_sample()]
            except Exception:  # noqa: BLE001 - the node may still be starting
                return []

        keys = wait_until(registered, 90, "the sample on the node")
        assert keys == [data_sample_key(channel / folder.name)]
        datasets = client.list_dataset()
        assert [d["name"] for d in datasets] == ["procfile smoke"]

        # When honcho is stopped as a process manager would stop it
        started = time.monotonic()
        os.kill(honcho.pid, signal.SIGTERM)
        code = honcho.wait(90)

        # Then every process stopped on its own, with exit code 0, in time
        # (honcho itself answers a SIGTERM with 143, whatever its processes did)
        text = output()
        assert code in (0, 143), text[-3000:]
        assert time.monotonic() - started < 60
        assert "SIGKILL" not in text, text[-3000:]
        for name in ("node", "worker", "watcher"):
            stopped = re.search(rf"system\s*\|\s*{name}\.1 stopped \(rc=0\)", text)
            assert stopped, (name, text[-3000:])
        assert "Traceback" not in text, text[-5000:]
    finally:
        client.close()
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait(10)
        log.close()
        redis.stop()
