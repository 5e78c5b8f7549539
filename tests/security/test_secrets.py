"""No token or password in Redis, job records, logs, error messages, argv or state files."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest
import redis

from substra_worker.jobs import FINAL_STATES, JobState
from substra_worker.node.auth import hash_token
from substra_worker.settings import NODE_TOKEN_FILE
from substra_worker.watcher.state import WatchState
from tests.assets import make_sample_folders
from tests.faults.results import record_security
from tests.faults.workload import dataset_data, submit_workload, wait_final, wait_until
from tests.security.conftest import (
    cmdline,
    descendants,
    environ_without_substra,
    environment,
    files_text,
    leaks,
    process_tree_cmdlines,
)
from tests.support.stack import redis_dump

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_no_secret_reaches_redis_records_logs_errors_argv_or_files(
    secret_values,
    protected_redis,
    protected_settings,
    producer,
    env_node,
    start_worker,
    tmp_path,
):
    s = dataclasses.replace(secret_values, node_token=env_node.token)
    # Given a worker with the node's token, and a profile "stale" whose token is wrong
    config = tmp_path / "substra.json"
    config.write_text(json.dumps({"stale": {"url": env_node.url, "version": "0.0"}}))
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"stale": {"token": s.wrong_token}}))
    worker = start_worker(
        protected_settings, env_node, config_path=str(config), tokens_path=str(tokens)
    )
    # and a watcher process feeding a channel
    root = tmp_path / "watch"
    watch_log = tmp_path / "watch.log"
    env = environ_without_substra()
    env.update(
        SUBSTRA_WORKER_REDIS_URL=protected_settings.redis_url,
        SUBSTRA_WORKER_QUIET_PERIOD="0.3",
        SUBSTRA_WORKER_BATCH_WINDOW="0.3",
    )

    # When a workload runs: successes, a job the node refuses (400), a job whose
    # profile token the node does not know (401), a watched channel...
    w = submit_workload(producer, tmp_path, "secrets", samples=12, tuples=1, bulk=2, doomed=1)
    stale = producer.add_dataset(dataset_data(tmp_path, "stale"), target="stale")
    assert wait_final(w.jobs + [stale], 60) == []
    channel = root / "channel"
    channel.mkdir(parents=True)
    (channel / "channel.json").write_text(json.dumps({"dataset_key": w.dataset.key}))
    with open(watch_log, "ab") as out:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "substra_worker", "watch", str(root)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        for folder in make_sample_folders(tmp_path / "drops", 3, prefix="watched"):
            shutil.move(str(folder), channel / folder.name)
        rclient = redis.Redis.from_url(protected_settings.redis_url, decode_responses=True)
        state = WatchState(rclient, root)
        wait_until(lambda: state.counts().get("registered") == 3, 60, "3 watched folders")
        # ...and Redis restarts under the worker and the watcher (their reconnect logs)
        protected_redis.stop()
        time.sleep(2.5)
        protected_redis.start()
        wait_until(
            lambda: "Connected to" in worker.log_text().split("Connection to broker lost")[-1],
            30,
            "the worker to reconnect",
        )
        argv = process_tree_cmdlines(worker.process.pid) + process_tree_cmdlines(watcher.pid)
        argv += process_tree_cmdlines(env_node.process.pid)
        argv += process_tree_cmdlines(protected_redis.process.pid)
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(30)
    assert stale.refresh().state is JobState.FAILED
    assert stale.error["type"] == "AuthenticationError" and stale.error.get("status") == 401

    # Then no secret is anywhere: Redis (every key and value, message bodies decoded),
    dump = redis_dump(rclient)
    assert w.dataset.id in dump and "stale" in dump  # the dump does hold the jobs
    assert leaks(dump, s) == []
    # the job records and their errors,
    records = [j.refresh().to_dict() for j in w.jobs + [stale]]
    assert all(r["state"] in FINAL_STATES for r in records)
    assert leaks(json.dumps(records), s) == []
    errors = [r["error"]["message"] for r in records if r.get("error")]
    assert any("Invalid token" in e for e in errors) and any("no algo" in e for e in errors)
    # the logs of the worker, the watcher, the node and Redis,
    logs = {
        "worker": worker.log_text(),
        "watcher": watch_log.read_text(),
        "node": env_node.log_text(),
        "redis": protected_redis.log_path.read_text(),
    }
    assert "Connection to broker lost" in logs["worker"]  # the outage was logged...
    assert "redis://:**@" in logs["worker"]  # ...with the URL masked
    for name, text in logs.items():
        assert leaks(text, s) == [], name
    # the command lines of every process (secrets travel in the environment),
    for line in argv:
        assert leaks(line, s) == [], line
    # and the state files (the node keeps the token's hash only)
    state_files = files_text(env_node.node_dir) | files_text(protected_settings.state_dir)
    for path, data in state_files.items():
        text = data.decode("latin-1")
        assert leaks(text, s) == [], path
    auth_files = b"".join(data for p, data in state_files.items() if p.name.startswith("auth"))
    assert hash_token(s.node_token).encode() in auth_files
    redis_files = files_text(protected_redis.dir)
    for path, data in redis_files.items():
        if path.name != "redis.conf":  # the password's one place (mode 0600)
            assert leaks(data.decode("latin-1"), s) == [], path
    rclient.close()
    record_security(
        "No token or password in Redis, job records, error messages, logs, argv or state files",
        "pass",
        "every Redis key and value (Celery bodies decoded); worker, watcher, node and Redis "
        "logs, a Redis restart included; a job failed 401 and one failed 400",
    )


def test_up_keeps_its_generated_node_password_and_token_out_of_logs_and_argv(
    protected_redis, secret_values, tmp_path
):
    """`up` makes a node password, gives it to its worker, and keeps a token for local tools."""
    state = tmp_path / "state"
    env = environ_without_substra()
    env.update(
        SUBSTRA_WORKER_STATE_DIR=str(state),
        SUBSTRA_WORKER_REDIS_URL=protected_redis.url,  # a configured, protected Redis
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "up.log"
    with open(log, "ab") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "substra_worker", "up", "--no-watch", "--no-api", "-c", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        wait_until(lambda: "substra-worker is up" in log.read_text(), 90, "up")
        # the secrets `up` made, read where they belong: the node's environment and
        # the token file it keeps for local tools
        children = {cmdline(pid): environment(pid) for pid in descendants(up.pid)}
        node_env = next(env for c, env in children.items() if " node " in c)
        password = node_env["SUBSTRA_WORKER_NODE_USERS"].rsplit(":", 1)[1]
        token_file = state / NODE_TOKEN_FILE
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        s = dataclasses.replace(
            secret_values, node_password=password, node_token=token_file.read_text().strip()
        )
        # only the worker has the node's credentials
        holders = sorted(
            c.split(" -m substra_worker ")[-1].split()[0]
            for c, env in children.items()
            if password in "".join(env.values()) and " -m substra_worker " in c
        )
        assert holders == ["node", "worker"], holders
        argv = process_tree_cmdlines(up.pid)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(90)
    text = log.read_text()
    assert "configured (SUBSTRA_WORKER_REDIS_URL)" in text
    assert leaks(text, s) == []
    for path in (state / "logs").glob("*.log"):
        assert leaks(path.read_text(errors="replace"), s) == [], path
    for line in argv:
        assert leaks(line, s) == [], line
    assert not token_file.exists()  # removed when `up` stops
    for path, data in files_text(state).items():
        assert leaks(data.decode("latin-1"), s) == [], path
    record_security("`up`: its node password and token reach only the node and the worker", "pass")
