"""Fixtures of the executor tests: extracted test assets, sample folders, a step runner."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from substra_worker.node import executor
from tests import assets

STEP_TIMEOUT = 60.0  # seconds: generous, a real step of the test assets takes ~0.1 s


def proc_state(pid: int) -> str | None:
    """The state letter of a process (R, S, Z...), or None when it no longer exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[0]


def is_running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie is its new parent's to reap)."""
    return proc_state(pid) not in (None, "Z")


def assert_gone(pid: int, within: float = 2.0) -> None:
    """The process stops running within a moment (a killed process takes a few ms to die)."""
    deadline = time.monotonic() + within
    while is_running(pid):
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.01)


@pytest.fixture
def extracted(tmp_path: Path) -> Callable[..., Path]:
    """extracted(kind, **kw) -> the script of that asset's archive, unpacked as a node would."""

    def make(kind: str, fmt: str | None = None, **kwargs) -> Path:
        archives = tmp_path / "archives"
        if kind == "metrics":
            archive = assets.metrics_archive(archives, fmt or "zip", **kwargs)
        else:
            archive = assets.make_algo_archive(kind, archives, fmt or "tar.gz", **kwargs)
        folder = assets.unpack_archive(archive, tmp_path / "extracted" / archive.name)
        return folder / executor.entrypoint_script(folder)

    return make


@pytest.fixture
def train_samples(tmp_path: Path) -> list[Path]:
    return assets.make_sample_folders(tmp_path / "train", 3, seed=1)


@pytest.fixture
def test_samples(tmp_path: Path) -> list[Path]:
    return assets.make_sample_folders(tmp_path / "test", 2, test=True, seed=1)


@pytest.fixture
def sandbox(tmp_path: Path) -> Callable[[str], Path]:
    """sandbox(name) -> a fresh, empty working folder."""

    def make(name: str) -> Path:
        path = tmp_path / "sandboxes" / name
        path.mkdir(parents=True)
        return path

    return make


@pytest.fixture
def run() -> Callable[..., executor.StepResult]:
    """run(argv, script, cwd, **kw): run_step with this interpreter and a generous timeout."""

    def call(argv: list[str], script: Path, cwd: Path, **kwargs) -> executor.StepResult:
        kwargs.setdefault("python", sys.executable)
        kwargs.setdefault("timeout", STEP_TIMEOUT)
        return executor.run_step(argv, script=script, cwd=cwd, **kwargs)

    return call
