"""docker-compose.yml, the Dockerfile and the Procfile name real commands and keep secrets out.

There is no Docker engine here: ``docker-compose config`` (Debian's
``docker-compose`` package: ``apt-get install -y docker-compose``) validates the
file and prints it normalised; the commands it names are then run with
``--help`` appended, which makes click check every option name. In CI
(``CI=true``) a missing docker-compose fails the test instead of skipping it.
The normalised file is read with PyYAML.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from tests.ops.conftest import REPO, VENV_BIN, clean_env, require_tool

SERVICES = {"redis", "node", "worker", "watcher", "flower", "api"}
# values that must come from the environment, never from the file or the image
SECRETS = {
    "SUBSTRA_WORKER_NODE_USERS": "ops-test-user:ops-test-password",
    "SUBSTRA_WORKER_API_TOKEN": "ops-test-api-token",
    "SUBSTRA_WORKER_NODE_TOKEN": "ops-test-node-token",
    "SUBSTRA_WORKER_NODE_USERNAME": "ops-test-user",
    "SUBSTRA_WORKER_NODE_PASSWORD": "ops-test-password",
}


def compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = require_tool("docker-compose")
    return subprocess.run(
        [exe, "-f", "docker-compose.yml", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def config() -> dict:
    env = clean_env()
    env.update(SECRETS)
    checked = compose("config", "-q", env=env)
    assert checked.returncode == 0, checked.stderr
    printed = compose("config", env=env)
    assert printed.returncode == 0, printed.stderr
    return yaml.safe_load(printed.stdout)


def substra_worker_help(argv: list[str]) -> subprocess.CompletedProcess:
    """``argv`` (a substra-worker command line) with --help: click rejects unknown options."""
    assert argv[0] == "substra-worker", argv
    return subprocess.run(
        [str(VENV_BIN / "substra-worker"), *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )


def test_compose_config_is_valid_and_has_every_service(config):
    assert set(config["services"]) == SERVICES


def test_compose_refuses_to_run_without_its_secrets():
    env = clean_env()  # no secret set
    result = compose("config", "-q", env=env)

    assert result.returncode != 0
    assert "SUBSTRA_WORKER_NODE_USERS" in result.stderr or "SUBSTRA_WORKER_API_TOKEN" in (
        result.stderr
    )


def test_compose_secrets_come_from_the_environment(config):
    text = (REPO / "docker-compose.yml").read_text()
    for value in SECRETS.values():
        assert value not in text
    env = config["services"]["node"]["environment"]
    assert env["SUBSTRA_WORKER_NODE_USERS"] == SECRETS["SUBSTRA_WORKER_NODE_USERS"]
    assert (
        config["services"]["api"]["environment"]["SUBSTRA_WORKER_API_TOKEN"]
        == (SECRETS["SUBSTRA_WORKER_API_TOKEN"])
    )
    worker_env = config["services"]["worker"]["environment"]
    for name in ("SUBSTRA_WORKER_NODE_USERNAME", "SUBSTRA_WORKER_NODE_PASSWORD"):
        assert worker_env[name] == SECRETS[name]
    assert worker_env["SUBSTRA_WORKER_NODE_TOKEN"] == SECRETS["SUBSTRA_WORKER_NODE_TOKEN"]
    for name, service in config["services"].items():
        env = service.get("environment") or {}
        if name != "redis":
            assert env["SUBSTRA_WORKER_REDIS_URL"] == "redis://redis:6379/0"
        if name != "worker":  # only the workers hold node credentials
            assert not {"SUBSTRA_WORKER_NODE_TOKEN", "SUBSTRA_WORKER_NODE_PASSWORD"} & set(env)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert not re.search(r"(TOKEN|PASSWORD|USERS)\s*=", dockerfile)


def test_redis_is_append_only_and_never_evicts(config):
    command = config["services"]["redis"]["command"]
    joined = " ".join(command)
    assert command[0] == "redis-server"
    assert "--appendonly yes" in joined and "--maxmemory-policy noeviction" in joined
    assert any(
        v.endswith(":/data") or ":/data:" in v for v in config["services"]["redis"]["volumes"]
    )


def test_workers_scale_and_share_paths_with_the_watcher(config):
    services = config["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker
    # the worker reads sample folders at the paths the watcher saw them, and shares state
    assert set(worker["volumes"]) >= set(services["watcher"]["volumes"])
    assert any(
        v.startswith(f"{REPO}/watch_dirs:/watch_dirs") for v in services["watcher"]["volumes"]
    )
    for name in ("node", "worker", "watcher", "api"):
        assert any(v.startswith("state:/data") for v in services[name]["volumes"]), name
    for name in SERVICES - {"redis"}:
        assert services[name]["build"]["context"] == str(REPO), name


@pytest.mark.parametrize("service", sorted(SERVICES - {"redis", "flower"}))
def test_each_service_runs_a_real_cli_command(config, service):
    command = config["services"][service]["command"]

    result = substra_worker_help(command)

    assert result.returncode == 0, f"{command}: {result.stderr}"
    assert "Usage: substra-worker" in result.stdout


def test_a_wrong_option_would_be_caught():
    result = substra_worker_help(["substra-worker", "node", "--no-such-option"])
    assert result.returncode == 2 and "No such option" in result.stderr


def test_flower_names_the_celery_app(config):
    command = config["services"]["flower"]["command"]

    assert command[:4] == ["celery", "-A", "substra_worker.tasks", "flower"]
    module = importlib.import_module(command[2])
    assert type(module.app).__name__ == "Celery"
    if importlib.util.find_spec("flower") is not None:  # flower is only in the image
        result = subprocess.run(
            [sys.executable, "-m", "celery", *command[1:], "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(redis_url="redis://127.0.0.1:1/0"),
        )
        assert result.returncode == 0, result.stderr


def test_dockerfile_builds_on_python_311_slim_and_installs_the_package():
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == ["FROM python:3.11-slim"]
    text = "\n".join(lines)
    assert re.search(r"pip install \.", text)
    assert "COPY substra_worker" in text and "COPY pyproject.toml" in text
    assert "USER " in text  # not root at run time


def test_procfile_runs_real_commands():
    entries = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if match:
            entries[match[1]] = shlex.split(match[2])
    assert set(entries) == {"node", "worker", "watcher"}
    for name, argv in entries.items():
        start = argv.index("substra-worker")
        result = substra_worker_help(argv[start:])
        assert result.returncode == 0, f"{name}: {result.stderr}"
