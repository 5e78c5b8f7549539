"""run_step as a process supervisor: logs, timeouts, cancels, process groups, environment."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from substra_worker.node import executor as ex
from tests import assets

from .conftest import assert_gone, proc_state


def script(tmp_path: Path, code: str, name: str = "step.py") -> Path:
    path = tmp_path / "scripts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


def wait_file(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)
    return path.read_text()


def read_pids(cwd: Path) -> list[int]:
    return [int(p) for p in (cwd / assets.PIDS_FILE).read_text().split()]


def sleeping_train(sandbox, extracted, train_samples, name: str, seconds: float = 60):
    box = sandbox(name)
    data = ex.prepare_data_samples_dir(box, train_samples)
    models = ex.prepare_models_dir(box, {})
    argv = ex.train_args([], 0, data, models, box / "out", assets.opener_path(), box / "l")
    return argv, extracted("sleeping_algo", sleep=seconds), box


def test_timeout_kills_the_step_and_its_children(run, sandbox, extracted, train_samples):
    # Given a step that sleeps a minute in a child process too
    argv, algo, box = sleeping_train(sandbox, extracted, train_samples, "timeout")

    # When it runs with a one-second limit
    started = time.monotonic()
    result = run(argv, algo, box, timeout=1.0)
    elapsed = time.monotonic() - started

    # Then it is stopped right after the limit, with everything it started
    assert elapsed < 3.0
    assert not result.ok
    assert result.error == "timed out after 1s"
    assert "timed out" in result.log and "sleeping 60s" in result.log
    parent, child = read_pids(box)
    assert proc_state(parent) is None  # killed and reaped: no zombie left
    assert_gone(child)


def test_should_cancel_stops_a_running_step(run, sandbox, extracted, train_samples):
    argv, algo, box = sleeping_train(sandbox, extracted, train_samples, "cancel")
    pids_file = box / assets.PIDS_FILE

    started = time.monotonic()
    result = run(argv, algo, box, should_cancel=pids_file.exists, poll=0.05)
    elapsed = time.monotonic() - started

    assert elapsed < 5.0
    assert not result.ok and result.error == "canceled"
    parent, child = read_pids(box)
    assert proc_state(parent) is None
    assert_gone(child)


def test_cancel_from_another_thread(run, sandbox, extracted, train_samples):
    argv, algo, box = sleeping_train(sandbox, extracted, train_samples, "thread")
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    try:
        started = time.monotonic()
        result = run(argv, algo, box, should_cancel=cancel.is_set)
        assert time.monotonic() - started < 3.0
    finally:
        timer.cancel()
    assert result.error == "canceled"


def test_a_canceled_step_does_not_start(run, tmp_path):
    marker = tmp_path / "started"
    code = f"open({str(marker)!r}, 'w').close()"
    result = run([], script(tmp_path, code), tmp_path / "box", should_cancel=lambda: True)
    assert result.error == "canceled" and not result.ok and result.returncode is None
    assert not marker.exists()


def test_sigterm_is_not_enough_for_a_stubborn_step(run, tmp_path):
    code = """
        import os, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
        with open("pids.tmp", "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        os.replace("pids.tmp", "pids")
        time.sleep(60)
    """
    box = tmp_path / "box"
    started = time.monotonic()
    result = run([], script(tmp_path, code), box, timeout=1.0, kill_grace=0.3)
    assert time.monotonic() - started < 4.0
    assert result.error == "timed out after 1s"
    parent, child = (int(p) for p in (box / "pids").read_text().split())
    assert proc_state(parent) is None
    assert_gone(child)


def test_children_left_behind_by_a_successful_step_are_killed(run, tmp_path):
    code = """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("child", child.pid)
    """
    result = run([], script(tmp_path, code), tmp_path / "box")
    assert result.ok, result.log
    child = int(result.log.split()[-1])
    assert_gone(child)


def test_an_exception_in_should_cancel_still_kills_the_step(run, sandbox, extracted, train_samples):
    argv, algo, box = sleeping_train(sandbox, extracted, train_samples, "raising")

    def should_cancel() -> bool:
        if (box / assets.PIDS_FILE).exists():
            raise RuntimeError("state store unavailable")
        return False

    with pytest.raises(RuntimeError, match="state store unavailable"):
        run(argv, algo, box, should_cancel=should_cancel, poll=0.05)
    parent, child = read_pids(box)
    assert proc_state(parent) is None
    assert_gone(child)


def test_exit_code_and_signal_are_reported(run, tmp_path):
    result = run([], script(tmp_path, "import sys; sys.exit(3)", "exit3.py"), tmp_path / "a")
    assert (result.ok, result.error, result.returncode) == (False, "exit code 3", 3)

    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    result = run([], script(tmp_path, code, "kill.py"), tmp_path / "b")
    assert (result.ok, result.error, result.returncode) == (False, "killed by signal SIGKILL", -9)


def test_arguments_and_working_directory(run, tmp_path):
    code = """
        import json, os, sys
        json.dump({"argv": sys.argv[1:], "cwd": os.getcwd()}, open("seen.json", "w"))
    """
    box = tmp_path / "box"
    result = run(["train", "a b", "--rank", "1"], script(tmp_path, code), box)
    assert result.ok, result.log
    seen = json.loads((box / "seen.json").read_text())
    assert seen == {"argv": ["train", "a b", "--rank", "1"], "cwd": str(box)}


def test_the_log_keeps_only_the_tail(run, tmp_path):
    code = """
        import sys
        for i in range(3000):
            print(f"line {i:05d} " + "x" * 90)
        print("the end", file=sys.stderr)
    """
    result = run([], script(tmp_path, code), tmp_path / "box")
    assert result.ok
    assert len(result.log.encode()) <= ex.TAIL_BYTES + 100
    assert result.log.startswith("[... ")
    assert "line 02999" in result.log and "line 00000" not in result.log
    assert result.log.endswith("the end\n")
    # the whole output stays in the sandbox log file
    assert "line 00000" in (tmp_path / "box" / ex.LOG_NAME).read_text()


def test_each_result_holds_only_its_own_step_output(run, tmp_path):
    box = tmp_path / "box"
    first = run([], script(tmp_path, "print('first step')", "one.py"), box)
    second = run([], script(tmp_path, "print('second step')", "two.py"), box)
    assert "first step" in first.log
    assert "second step" in second.log and "first step" not in second.log
    assert "first step" in (box / ex.LOG_NAME).read_text()


def test_an_interpreter_that_cannot_start_is_a_failed_step(tmp_path):
    result = ex.run_step(
        [],
        script=script(tmp_path, "pass"),
        cwd=tmp_path / "box",
        python=str(tmp_path / "no-such-python"),
        timeout=5,
    )
    assert not result.ok and result.returncode is None
    assert result.error.startswith("cannot start")
    assert "no-such-python" in result.log


def test_the_interpreter_is_configurable(run, tmp_path):
    # a wrapper interpreter proves which program run_step starts
    wrapper = tmp_path / "mypython"
    wrapper.write_text(f'#!/bin/sh\necho "wrapped python"\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    result = run([], script(tmp_path, "print('inside')"), tmp_path / "box", python=str(wrapper))
    assert result.ok, result.log
    assert result.log.splitlines() == ["wrapped python", "inside"]


def test_secrets_do_not_reach_the_step(run, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "t0k3n")
    monkeypatch.setenv("DB_PASSWORD", "pw")
    monkeypatch.setenv("aws_secret_access_key", "s")
    monkeypatch.setenv("SUBSTRA_WORKER_NODE_USERS", "alice:pw")
    monkeypatch.setenv("BROKER_LOCATION", "redis://user:hunter2@127.0.0.1:6379/0")
    monkeypatch.setenv("HARMLESS_SETTING", "kept")
    monkeypatch.setenv("PLAIN_URL", "http://127.0.0.1:8000/")
    code = "import json, os; json.dump(dict(os.environ), open('env.json', 'w'))"
    box = tmp_path / "box"

    result = run([], script(tmp_path, code), box)

    assert result.ok, result.log
    env = json.loads((box / "env.json").read_text())
    for name in (
        "MY_API_TOKEN",
        "DB_PASSWORD",
        "aws_secret_access_key",
        "SUBSTRA_WORKER_NODE_USERS",
        "BROKER_LOCATION",
    ):
        assert name not in env
    assert env["HARMLESS_SETTING"] == "kept" and env["PLAIN_URL"] == "http://127.0.0.1:8000/"
    assert "PATH" in env and env["PYTHONUNBUFFERED"] == "1"
    assert "t0k3n" not in json.dumps(env) and "hunter2" not in json.dumps(env)


def test_an_explicit_base_environment_is_filtered_too(run, tmp_path):
    code = "import json, os; json.dump(dict(os.environ), open('env.json', 'w'))"
    box = tmp_path / "box"
    base = {"PATH": "/usr/bin:/bin", "NODE_TOKEN": "x", "KEEP": "1"}
    result = run([], script(tmp_path, code), box, env=base)
    assert result.ok, result.log
    env = json.loads((box / "env.json").read_text())
    assert env["KEEP"] == "1" and "NODE_TOKEN" not in env and env["PATH"] == "/usr/bin:/bin"
