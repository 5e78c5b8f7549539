"""Run one algo or metrics step the way a Substra node of the substratools 0.6.1 era does.

A step is ``[python, script, *argv]`` run in a fresh sandbox folder, with every path
passed as an explicit substratools flag, so no container is needed. The step runs in a
process group of its own: a timeout or a cancel kills the whole group (the algo and
anything it spawned), and the step is always reaped, so no zombie is left behind.

Public pieces:

- ``StepResult``, ``run_step``: run a step, keep the tail of its output.
- ``entrypoint_script``: the script an archive's Dockerfile ``ENTRYPOINT`` names.
- ``train_args``, ``predict_args``, ``aggregate_args``, ``composite_train_args``,
  ``composite_predict_args``, ``metrics_args``: the substratools 0.6.1 command lines
  (every flag checked against its argparse definitions).
- ``read_perf``: the score a metrics step wrote (``{"all": score}``).
- ``prepare_data_samples_dir(sandbox, samples)``: a folder with one sub-folder per data
  sample (symlinks), which is what ``--data-samples-path`` expects.
- ``prepare_models_dir(sandbox, models)``: a folder holding the input models under the
  names passed on the command line (copies by default, so a step cannot alter a stored
  model).
- ``step_environment(base)``: the environment a step gets: the node's, minus secrets.

Note that substratools creates its default folders (``model/``, ``pred/``,
``output_models/``) in the working directory even when explicit paths are given; the
sandbox absorbs them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PathLike = str | os.PathLike

LOG_NAME = "step.log"  # file, in the step's working directory, receiving stdout and stderr
TAIL_BYTES = 10 * 1024  # bytes of output kept in StepResult.log
KILL_GRACE = 0.5  # seconds between SIGTERM and SIGKILL of a step's process group

# Environment variables whose name contains one of these never reach a step.
SECRET_NAME_PARTS = (
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "CREDENTIAL",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "AUTH",
)
# Nor do this project's own settings (node token, users, Redis URL...).
PRIVATE_PREFIXES = ("SUBSTRA_WORKER_",)
# A URL carrying a password (scheme://user:password@host) is dropped whatever its name.
_URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]*:[^/\s@]*@")
_PYTHON = re.compile(r"^(python|pypy)[0-9.]*$")
_OPTIONS_WITH_VALUE = ("-W", "-X", "--check-hash-based-pycs")


@dataclass
class StepResult:
    """What a step did: success, the tail of its output, and a one-line reason on failure."""

    ok: bool
    log: str  # tail of stdout+stderr (last ~10 KB)
    error: str | None  # "exit code 1", "timed out after 5s", "canceled", ... ; None when ok
    returncode: int | None = None  # None when the step could not start
    duration: float = 0.0  # seconds


# --------------------------------------------------------------------------- Dockerfile


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        name, _, args = current.strip().partition(" ")
        instructions.append((name.upper(), args.strip()))
        current = ""
    if current.strip():
        name, _, args = current.strip().partition(" ")
        instructions.append((name.upper(), args.strip()))
    return instructions


def _entrypoint_tokens(args: str) -> list[str]:
    if args.startswith("["):
        try:
            tokens = json.loads(args)
        except json.JSONDecodeError:
            tokens = None  # Docker falls back to the shell form
        if isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
            return tokens
    try:
        return shlex.split(args)
    except ValueError as e:
        raise ValueError(f"cannot parse ENTRYPOINT {args!r}: {e}") from e


def _script_token(tokens: list[str]) -> str:
    """The script among the ENTRYPOINT words: after the interpreter and its options."""
    words = list(tokens)
    if words[:1] == ["exec"]:
        words = words[1:]
    if words and Path(words[0]).name == "env":
        words = words[1:]
    if not words:
        raise ValueError("the Dockerfile ENTRYPOINT is empty")
    if not _PYTHON.match(Path(words[0]).name):
        return words[0]  # an executable script named directly
    i = 1
    while i < len(words):
        word = words[i]
        if word in ("-m", "-c"):
            raise ValueError(f"ENTRYPOINT {tokens!r} runs 'python {word}', not a script file")
        if word in _OPTIONS_WITH_VALUE:
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            return word
    raise ValueError(f"ENTRYPOINT {tokens!r} names no script")


def _dockerfile_dir(archive_dir: Path) -> Path:
    if (archive_dir / "Dockerfile").is_file():
        return archive_dir
    # an archive made of one top-level folder holding the Dockerfile
    entries = [p for p in archive_dir.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "Dockerfile").is_file():
        return entries[0]
    raise ValueError(f"no Dockerfile at the top of the archive ({archive_dir})")


def entrypoint_script(archive_dir: Path) -> str:
    """The script named by the Dockerfile ``ENTRYPOINT``, relative to ``archive_dir``.

    Accepts the exec form (``["python3", "algo.py"]``) and the shell form
    (``python3 algo.py``); the last ENTRYPOINT wins, as in Docker. The script path is looked
    up relative to the archive (``/sandbox/algo.py`` as ``sandbox/algo.py``), then by its
    file name, since the Dockerfile's COPY and WORKDIR may have moved it.
    Raises ValueError when the Dockerfile, its ENTRYPOINT or the script is missing.
    """
    archive_dir = Path(archive_dir)
    if not archive_dir.is_dir():
        raise ValueError(f"archive folder {archive_dir} does not exist")
    base = _dockerfile_dir(archive_dir)
    dockerfile = base / "Dockerfile"
    try:
        text = dockerfile.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise ValueError(f"cannot read {dockerfile}: {e}") from e
    entrypoints = [args for name, args in _dockerfile_instructions(text) if name == "ENTRYPOINT"]
    if not entrypoints:
        raise ValueError("the Dockerfile has no ENTRYPOINT naming the script to run")
    script = _script_token(_entrypoint_tokens(entrypoints[-1]))
    # as written, then (COPY may have moved it, e.g. to an absolute path) by its file name
    candidates = [script.lstrip("/"), Path(script).name]
    root = archive_dir.resolve()
    for candidate in candidates:
        path = (base / candidate).resolve()
        if path.is_file() and path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    raise ValueError(
        f"the script {script!r} named by the Dockerfile ENTRYPOINT is not in the archive"
    )


# --------------------------------------------------------------------------- running


def step_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without secrets or this project's settings, plus unbuffered, cache-free Python.

    Unbuffered output keeps the log in order when a step is killed; no bytecode files keep
    shared algo extraction folders untouched.
    """
    env: dict[str, str] = {}
    for name, value in base.items():
        upper = name.upper()
        if any(part in upper for part in SECRET_NAME_PARTS):
            continue
        if upper.startswith(PRIVATE_PREFIXES):
            continue
        if _URL_WITH_PASSWORD.search(value):
            continue
        env[name] = value
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, sig)


def _exited(pid: int) -> bool:
    """Whether the step ended, WITHOUT reaping it: while it is an unreaped zombie its pid
    (and so its process group id) cannot be reused, so killing the group stays safe."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _wait_exit(pid: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for the step to end (not reaped); True if it did."""
    deadline = time.monotonic() + seconds
    delay = 0.001
    while True:
        if _exited(pid):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


def _stop(proc: subprocess.Popen, grace: float) -> None:
    """Kill what is left of the step's process group, then reap the step."""
    if not _exited(proc.pid):
        _kill_group(proc.pid, signal.SIGTERM)
        _wait_exit(proc.pid, grace)
    # SIGKILL even when the leader is gone: what it spawned may still be running
    _kill_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _read_tail(path: Path, start: int, tail_bytes: int) -> str:
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            begin = max(start, end - tail_bytes)
            f.seek(begin)
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if begin > start:
        # drop the partial first line and say what was dropped
        _, _, rest = text.partition("\n")
        text = f"[... {begin - start} bytes above not kept ...]\n" + (rest or text)
    return text


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def run_step(
    argv_tail: list[str],
    *,
    script: Path,
    cwd: Path,
    python: str,
    timeout: float,
    should_cancel: Callable[[], bool] = lambda: False,
    poll: float = 0.2,
    env: Mapping[str, str] | None = None,
    log_name: str = LOG_NAME,
    tail_bytes: int = TAIL_BYTES,
    kill_grace: float = KILL_GRACE,
) -> StepResult:
    """Run ``[python, script, *argv_tail]`` in ``cwd`` and wait for it, the timeout or a cancel.

    stdout and stderr go (appended) to ``cwd/log_name``; the result keeps the last
    ``tail_bytes`` of what this step wrote. ``env`` is the base environment (default: this
    process's), always filtered by ``step_environment``. Never raises for a failing step: a
    step that cannot even start is a failed StepResult too.
    """
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    log_path = cwd / log_name
    started = time.monotonic()

    def result(ok: bool, error: str | None, returncode: int | None, start: int) -> StepResult:
        return StepResult(
            ok=ok,
            log=_read_tail(log_path, start, tail_bytes),
            error=error,
            returncode=returncode,
            duration=time.monotonic() - started,
        )

    # Inheriting the caller's environment is not configuration: settings.py stays the one
    # place that interprets SUBSTRA_WORKER_* variables, and those are dropped here.
    base_env = os.environ if env is None else env
    with open(log_path, "ab") as log:
        start = log.seek(0, os.SEEK_END)
        if should_cancel():
            log.write(b"[substra-worker] step canceled before it started\n")
            log.flush()
            return result(False, "canceled", None, start)
        command = [python, os.fspath(script), *map(str, argv_tail)]
        try:
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=step_environment(base_env),
                start_new_session=True,  # own process group: killed as a whole
                close_fds=True,
            )
        except OSError as e:
            log.write(f"[substra-worker] cannot start {python!r}: {e}\n".encode())
            log.flush()
            return result(False, f"cannot start {python!r}: {e.strerror or e}", None, start)

        deadline = started + timeout
        reason: str | None = None
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    reason = f"timed out after {_format_seconds(timeout)}"
                    break
                if _wait_exit(proc.pid, min(poll, remaining)):
                    break
                if should_cancel():
                    reason = "canceled"
                    break
        finally:
            # normal exit, timeout, cancel, or an exception in should_cancel: the group goes
            _stop(proc, kill_grace)
        if reason is not None:
            log.write(f"\n[substra-worker] step {reason}; its processes were killed\n".encode())
            log.flush()
            return result(False, reason, proc.returncode, start)

    code = proc.returncode
    if code == 0:
        return result(True, None, code, start)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return result(False, f"killed by signal {name}", code, start)
    return result(False, f"exit code {code}", code, start)


# --------------------------------------------------------------------------- sandbox


def prepare_data_samples_dir(
    sandbox: Path,
    samples: Mapping[str, PathLike] | Sequence[PathLike],
    name: str = "data",
) -> Path:
    """Make ``sandbox/name`` with one sub-folder (a symlink) per data sample; return it.

    ``samples`` maps a sub-folder name (a sample key) to the sample folder, or is a list of
    folders named after their leaf name (index-prefixed on clashes). substratools lists
    this folder and hands every sub-folder to the opener.
    """
    root = Path(sandbox) / name
    root.mkdir(parents=True, exist_ok=True)
    if isinstance(samples, Mapping):
        items = [(str(k), Path(v)) for k, v in samples.items()]
    else:
        paths = [Path(p) for p in samples]
        leaves = [p.name for p in paths]
        unique = len(set(leaves)) == len(leaves) and all(leaves)
        items = [(p.name if unique else f"{i:05d}_{p.name}", p) for i, p in enumerate(paths)]
    for sub, folder in items:
        if not sub or "/" in sub or sub in (".", ".."):
            raise ValueError(f"invalid data sample folder name {sub!r}")
        if not folder.is_dir():
            raise ValueError(f"data sample folder {folder} does not exist")
        os.symlink(folder.resolve(), root / sub, target_is_directory=True)
    return root


def prepare_models_dir(
    sandbox: Path,
    models: Mapping[str, PathLike],
    name: str = "models",
    *,
    link: bool = False,
) -> Path:
    """Make ``sandbox/name`` holding each input model under its command-line name; return it.

    Copies by default so that a step writing to its inputs cannot alter a stored model;
    ``link=True`` symlinks instead (for large models of trusted algos).
    """
    root = Path(sandbox) / name
    root.mkdir(parents=True, exist_ok=True)
    for model_name, source in models.items():
        if not model_name or "/" in model_name or model_name in (".", ".."):
            raise ValueError(f"invalid model file name {model_name!r}")
        source = Path(source)
        if not source.is_file():
            raise ValueError(f"model file {source} does not exist")
        target = root / model_name
        if link:
            os.symlink(source.resolve(), target)
        else:
            shutil.copyfile(source, target)
    return root


# --------------------------------------------------------------------------- command lines
# Flags as defined by substratools 0.6.1: substratools/algo.py (_generate_algo_cli,
# _generate_composite_algo_cli, _generate_aggregate_algo_cli) and substratools/metrics.py
# (_generate_cli). The first word of an algo command line is the sub-command.


def flags(**values: PathLike | int | None) -> list[str]:
    """``--name value`` pairs in the given order, ``_`` in names written ``-``; None is left out."""
    argv: list[str] = []
    for name, value in values.items():
        if value is not None:
            argv += [
                f"--{name.replace('_', '-')}",
                str(value) if isinstance(value, int) else os.fspath(value),
            ]
    return argv


def train_args(
    in_models: list[str],
    rank: int,
    data_samples_path: PathLike,
    models_path: PathLike,
    output_model_path: PathLike,
    opener_path: PathLike,
    log_path: PathLike,
) -> list[str]:
    """``algo.py train [models...]``: input models are file names inside ``models_path``."""
    return [
        "train",
        *in_models,
        *flags(
            rank=int(rank),
            data_samples_path=data_samples_path,
            models_path=models_path,
            output_model_path=output_model_path,
            opener_path=opener_path,
            log_path=log_path,
        ),
    ]


def predict_args(
    model: str,
    models_path: PathLike,
    data_samples_path: PathLike,
    opener_path: PathLike,
    output_predictions_path: PathLike,
) -> list[str]:
    """``algo.py predict <model>``: the model is a file name inside ``models_path``."""
    return [
        "predict",
        model,
        *flags(
            models_path=models_path,
            data_samples_path=data_samples_path,
            opener_path=opener_path,
            output_predictions_path=output_predictions_path,
        ),
    ]


def aggregate_args(
    in_models: list[str],
    rank: int,
    models_path: PathLike,
    output_model_path: PathLike,
    log_path: PathLike,
) -> list[str]:
    """``aggregate_algo.py aggregate [models...]``: no data samples, no opener."""
    return [
        "aggregate",
        *in_models,
        *flags(
            rank=int(rank),
            models_path=models_path,
            output_model_path=output_model_path,
            log_path=log_path,
        ),
    ]


def composite_train_args(
    rank: int,
    input_head: str | None,
    input_trunk: str | None,
    input_models_path: PathLike,
    output_models_path: PathLike,
    output_head_name: str,
    output_trunk_name: str,
    data_samples_path: PathLike,
    opener_path: PathLike,
    *,
    log_path: PathLike | None = None,
) -> list[str]:
    """``composite_algo.py train``: head/trunk inputs are optional file names inside
    ``input_models_path``; outputs are file names inside ``output_models_path``."""
    return [
        "train",
        *flags(
            rank=int(rank),
            input_head_model_filename=input_head or None,
            input_trunk_model_filename=input_trunk or None,
            input_models_path=input_models_path,
            output_models_path=output_models_path,
            output_head_model_filename=output_head_name,
            output_trunk_model_filename=output_trunk_name,
            data_samples_path=data_samples_path,
            opener_path=opener_path,
            log_path=log_path,
        ),
    ]


def composite_predict_args(
    input_head: str,
    input_trunk: str,
    input_models_path: PathLike,
    data_samples_path: PathLike,
    opener_path: PathLike,
    output_predictions_path: PathLike,
) -> list[str]:
    """``composite_algo.py predict``: both head and trunk are required by substratools."""
    return [
        "predict",
        *flags(
            input_head_model_filename=input_head,
            input_trunk_model_filename=input_trunk,
            input_models_path=input_models_path,
            data_samples_path=data_samples_path,
            opener_path=opener_path,
            output_predictions_path=output_predictions_path,
        ),
    ]


def metrics_args(
    predictions_path: PathLike,
    perf_path: PathLike,
    data_samples_path: PathLike,
    opener_path: PathLike,
    *,
    log_path: PathLike | None = None,
) -> list[str]:
    """``metrics.py`` (no sub-command): scores the predictions against the opener's y."""
    return flags(
        fake_data_mode="DISABLED",
        input_predictions_path=predictions_path,
        output_perf_path=perf_path,
        data_samples_path=data_samples_path,
        opener_path=opener_path,
        log_path=log_path,
    )


def read_perf(perf_path: PathLike) -> float:
    """The score of a metrics step: ``{"all": score}``. ValueError unless a finite number."""
    try:
        with open(perf_path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as e:
        raise ValueError(f"the metrics step wrote no perf file ({perf_path})") from e
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"unreadable perf file {perf_path}: {e}") from e
    if not isinstance(data, dict) or "all" not in data:
        raise ValueError(f'perf file {perf_path} is not {{"all": <score>}}')
    score = data["all"]
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise ValueError(f"perf {score!r} is not a number")
    score = float(score)
    if not math.isfinite(score):
        raise ValueError(f"perf {score!r} is not finite")
    return score
