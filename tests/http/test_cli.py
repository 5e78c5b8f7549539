"""`substra-worker node` as a command: users from the environment, clean shutdown on signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from tests import assets
from tests.http.conftest import ACCEPT, Api, add_algo, add_dataset, add_samples, wait_for
from tests.support.node_process import start_node


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_users_from_the_environment(tmp_path):
    node = start_node(
        tmp_path / "state", users=(), env={"SUBSTRA_WORKER_NODE_USERS": "carol:pw1,dave:pw2"}
    )
    try:
        token = node.login("dave", "pw2")
        headers = {**ACCEPT, "Authorization": f"Token {token}"}
        assert requests.get(f"{node.url}/node/", headers=headers, timeout=10).status_code == 200
        refused = requests.post(
            f"{node.url}/api-token-auth/", data={"username": "admin", "password": "admin"}
        )
        assert refused.status_code == 400
    finally:
        node.stop()


def test_sigint_stops_the_server_and_the_running_steps(tmp_path):
    node = start_node(tmp_path / "state")
    pids: list[int] = []
    try:
        api = Api(node)
        files = tmp_path / "files"
        dataset = add_dataset(api, files)
        samples = add_samples(api, tmp_path / "samples", dataset, 1)
        sleeper = add_algo(api, files, "sleeping_algo", sleep=60)
        response = api.post(
            "/traintuple/",
            json={
                "algo_key": sleeper,
                "data_manager_key": dataset,
                "train_data_sample_keys": samples,
            },
        )
        assert response.status_code == 201, response.text
        key = response.json()["pkhash"]

        sandbox = node.node_dir / "sandboxes" / key

        def written_pids() -> list[int]:
            for path in sandbox.rglob(assets.PIDS_FILE):
                text = path.read_text().split()
                if len(text) == 2:
                    return [int(p) for p in text]
            return []

        pids = wait_for(written_pids, 30)
        assert pids and all(_running(pid) for pid in pids)

        # When the node gets SIGINT
        node.process.send_signal(signal.SIGINT)
        # Then it exits cleanly, and the step it was running is gone with it
        assert node.process.wait(30) == 0
        assert "shutting down" in node.log_text()
        assert wait_for(lambda: not any(_running(pid) for pid in pids), 10)
        assert not any(p.is_file() for p in (node.node_dir / "uploads").rglob("*"))

        # and a restart on the same state picks the tuple up again
        node.start()
        assert api.get(f"/traintuple/{key}/").json()["status"] in ("todo", "doing")
    finally:
        node.stop()
        for pid in pids:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "substra_worker", "node", "--port", str(port)]
            + ["--state-dir", str(tmp_path), "--user", "a:b"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
