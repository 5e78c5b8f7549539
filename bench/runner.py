"""Running benchmarks: each gets a scratch folder, fresh processes, and a size.

A benchmark module exposes ``NAME``, ``TITLE``, ``SIZES`` (``{"quick": {...},
"full": {...}}``) and ``run(ctx) -> Result``. Whatever it starts it registers
with ``ctx.started(...)``, so it is stopped even when the benchmark fails; a
failing benchmark is recorded as such and the others still run.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from bench.report import Result
from substra_worker.redis_server import BundledRedis

NAMES = (
    "bulk_ingest",
    "queue_overhead",
    "watcher_latency",
    "large_upload",
    "compute_overhead",
    "connection_reuse",
)
C = TypeVar("C")


def module(name: str) -> ModuleType:
    if name not in NAMES:
        raise ValueError(f"unknown benchmark {name!r}; one of {', '.join(NAMES)}")
    return importlib.import_module(f"bench.{name}")


@dataclass
class Context:
    """What one benchmark runs with."""

    name: str
    size: str  # "quick" or "full"
    sizes: dict[str, Any]
    work: Path  # scratch folder, removed afterwards
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def log(self, message: str) -> None:
        print(f"[{self.name}] {message}", file=sys.stderr, flush=True)

    def started(self, process: C) -> C:
        """Start a ``bench.stack`` process (or a ``BundledRedis``); stop it when the bench ends."""
        self.stack.callback(process.stop)  # type: ignore[attr-defined] - first: a half start too
        process.start()  # type: ignore[attr-defined]
        return process

    def redis(self, name: str = "redis") -> BundledRedis:
        """A fresh redis-server of its own (the bundled one, as ``substra-worker up`` runs it)."""
        return self.started(BundledRedis(self.work / name))

    def folder(self, *parts: str) -> Path:
        path = self.work.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


def run_one(name: str, size: str, work_root: Path, *, keep: bool = False) -> Result:
    """Run benchmark ``name`` at ``size``; a failure becomes a Result with status "error"."""
    mod = module(name)
    work = work_root / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ctx = Context(name, size, dict(mod.SIZES[size]), work)
    started = time.monotonic()
    ctx.log(f"running ({size}: {ctx.sizes})")
    try:
        with ctx.stack:
            result: Result = mod.run(ctx)
    except Exception as e:  # noqa: BLE001 - recorded; the other benchmarks still run
        traceback.print_exc()
        result = Result(
            name, mod.TITLE, ctx.sizes, status="error", error=f"{type(e).__name__}: {e}"
        )
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.monotonic() - started
    ctx.log(f"done in {result.seconds:.1f}s ({result.status})")
    return result
