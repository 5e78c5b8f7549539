"""``substra-worker up``: the whole stack on one machine, supervised.

Starts, as child processes: the bundled Redis (unless a Redis URL is set), the
embedded node on loopback (unless a node URL or profile is set), a Celery
worker, the watcher and the HTTP API. Ctrl-C or SIGTERM stops them in reverse
order: the watcher stops producing, the worker finishes its running jobs
(warm shutdown) — or, past the grace period, leaves them to be delivered again
— and Redis flushes its append-only file, so the next ``up`` resumes.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import click

from substra_worker.settings import NODE_TOKEN_FILE, RUNTIME_FILE, Settings, get_settings
from substra_worker.supervisor import (
    ChildFailed,
    ChildSpec,
    Supervisor,
    install_signal_handlers,
    port_open,
)

NODE_USER = "substra-worker"  # the embedded node's one user, with a fresh password per run


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "substra_worker", *args]


def _redis_ready(url: str):
    import redis

    def ready(_proc: object) -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return False
        except redis.exceptions.BusyLoadingError:
            return False

    return ready


def _port_ready(host: str, port: int):
    return lambda _proc: port_open(host, port)


def _log_line(path: Path, needle: str):
    def ready(_proc: object) -> bool:
        try:
            return needle in path.read_text(errors="replace")
        except OSError:
            return False

    return ready


def _watcher_news(line: str) -> bool:
    """The watcher's lines worth showing on the console: folders seen, registered, failed."""
    return " INFO " in line or " WARNING " in line or " ERROR " in line or "watching" in line


@click.command("up")
@click.option(
    "--watch-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of watch channels [default: settings.watch_root].",
)
@click.option("--no-watch", is_flag=True, help="Do not start the watcher.")
@click.option("--no-api", is_flag=True, help="Do not start the HTTP API and dashboard.")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes [default: settings.worker_concurrency].",
)
def command(watch_root: Path | None, no_watch: bool, no_api: bool, concurrency: int | None) -> None:
    """Run Redis, the node, a worker, the watcher and the API; stop with Ctrl-C."""
    settings = get_settings()
    stack = Stack(settings, watch_root=watch_root, watch=not no_watch, api=not no_api)
    sys.exit(stack.run(concurrency))


class Stack:
    """The children of ``up`` and the environment that wires them together."""

    def __init__(self, settings: Settings, *, watch_root: Path | None, watch: bool, api: bool):
        self.settings = settings
        self.state_dir = Path(settings.state_dir).resolve()
        self.watch_root = Path(watch_root or settings.watch_root).resolve()
        self.watch = watch
        self.api = api
        # Children inherit this process's environment plus the wiring below; secrets
        # travel in environment variables only (never argv, which `ps` shows).
        self.env = dict(os.environ)
        self.env["SUBSTRA_WORKER_STATE_DIR"] = str(self.state_dir)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.lines: list[tuple[str, str]] = []
        # only the worker talks to the node: no other child gets its token
        self.worker_env: dict[str, str] = {}
        token = self.env.pop("SUBSTRA_WORKER_NODE_TOKEN", None)
        if token:
            self.worker_env["SUBSTRA_WORKER_NODE_TOKEN"] = token
        self.supervisor = Supervisor([], self.state_dir / "logs", report=self._report)

    @staticmethod
    def _report(message: str) -> None:
        click.echo(f"[up] {message}", err=True)

    # --- children ------------------------------------------------------------------------

    def _add_redis(self) -> None:
        if self.settings.redis_url:
            self.env["SUBSTRA_WORKER_REDIS_URL"] = self.settings.redis_url
            self.lines.append(("Redis", "configured (SUBSTRA_WORKER_REDIS_URL)"))
            return
        from substra_worker.redis_server import BundledRedis, free_port, redis_server_binary

        redis = BundledRedis(self.settings.redis_dir, port=free_port(), new_session=True)
        redis.dir.mkdir(parents=True, exist_ok=True)
        conf = redis.write_config()
        self.env["SUBSTRA_WORKER_REDIS_URL"] = redis.url
        self.supervisor.add(
            ChildSpec(
                "redis",
                [str(redis_server_binary()), str(conf)],
                env=self.env,
                ready=_redis_ready(redis.url),
                stop_timeout=30,
            )
        )
        self.lines.append(("Redis", f"{redis.url}  (bundled, append-only in {redis.dir})"))

    def _add_node(self) -> None:
        if self.settings.profile or self.settings.node_url:
            target = self.settings.profile and f"profile {self.settings.profile!r}"
            self.lines.append(("Node", target or str(self.settings.node_url)))
            return
        from substra_worker.redis_server import free_port

        host, port = "127.0.0.1", free_port()
        password = secrets.token_urlsafe(24)
        # the operator's own users (if any) keep working next to ours
        users = [u for u in self.env.pop("SUBSTRA_WORKER_NODE_USERS", "").split(",") if u]
        env = {
            **self.env,
            "SUBSTRA_WORKER_NODE_USERS": ",".join([*users, f"{NODE_USER}:{password}"]),
        }
        self.supervisor.add(
            ChildSpec(
                "node",
                _python("node", "--host", host, "--port", str(port)),
                env=env,
                ready=_port_ready(host, port),
                stop_timeout=30,
            )
        )
        self._node_login = (f"http://{host}:{port}", password)
        self.node_url = f"http://{host}:{port}"
        self.env["SUBSTRA_WORKER_NODE_URL"] = self.node_url
        # the worker logs in itself, and again whenever its token expires
        self.worker_env["SUBSTRA_WORKER_NODE_USERNAME"] = NODE_USER
        self.worker_env["SUBSTRA_WORKER_NODE_PASSWORD"] = password
        self.lines.append(("Node", f"http://{host}:{port}  (embedded, state in {self.state_dir})"))

    def _login(self) -> None:
        """Check the embedded node's credentials; keep a token for local tools (0600)."""
        login = getattr(self, "_node_login", None)
        if login is None:
            return
        from substra_worker.sdk import Client

        url, password = login
        with Client(url=url) as client:
            token = client.login(NODE_USER, password)
        path = self.state_dir / NODE_TOKEN_FILE
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)

    def _add_consumers(self, concurrency: int | None) -> None:
        n = concurrency or self.settings.worker_concurrency
        worker_log = self.state_dir / "logs" / "worker.log"
        self.supervisor.add(
            ChildSpec(
                "worker",
                _python("worker", "--concurrency", str(n)),
                env={**self.env, **self.worker_env},
                ready=_log_line(worker_log, "ready."),
                ready_timeout=120,
                # warm shutdown: running jobs finish; past the grace period they are
                # killed and their messages are delivered again on the next start
                stop_timeout=60,
            )
        )
        self.lines.append(("Worker", f"{n} processes"))
        if self.watch:
            self.watch_root.mkdir(parents=True, exist_ok=True)
            self.supervisor.add(
                ChildSpec(
                    "watcher",
                    _python("watch", str(self.watch_root)),
                    env=self.env,
                    echo=_watcher_news,
                )
            )
            self.lines.append(("Watcher", f"drop sample folders into {self.watch_root}/<channel>/"))
        if self.api:
            host, port = self.settings.api_host, self.settings.api_port
            if port_open(host, port):
                from substra_worker.redis_server import free_port

                self._report(f"port {port} is taken: the API listens on another one")
                port = free_port(host)
            self.supervisor.add(
                ChildSpec(
                    "api",
                    _python("api", "--host", host, "--port", str(port)),
                    env=self.env,
                    ready=_port_ready(host, port),
                )
            )
            self.lines.append(("API", f"http://{host}:{port}/  (dashboard, /jobs, /metrics)"))
            if not self.settings.api_token:
                self.lines.append(("API token", f"in {self.state_dir / 'api-token'}"))

    # --- run -----------------------------------------------------------------------------

    def _write_runtime(self) -> None:
        """Tell other commands of this state folder where Redis is (no secrets)."""
        runtime = {"pid": os.getpid()}
        if not self.settings.redis_url:  # a configured one may carry a password
            runtime["redis_url"] = self.env["SUBSTRA_WORKER_REDIS_URL"]
        if getattr(self, "node_url", None):
            runtime["node_url"] = self.node_url
        (self.state_dir / RUNTIME_FILE).write_text(json.dumps(runtime))

    def _clear_runtime(self) -> None:
        (self.state_dir / RUNTIME_FILE).unlink(missing_ok=True)
        (self.state_dir / NODE_TOKEN_FILE).unlink(missing_ok=True)

    def _restore_unacked(self) -> None:
        """With the bundled Redis no other worker exists: deliver abandoned messages now."""
        if self.settings.redis_url:
            return
        from substra_worker.tasks.recovery import restore_all_unacked

        restored = restore_all_unacked(self.env["SUBSTRA_WORKER_REDIS_URL"])
        if restored:
            self._report(f"{restored} interrupted job(s) from the last run queued again")

    def run(self, concurrency: int | None) -> int:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        install_signal_handlers(self.supervisor)
        try:
            self._add_redis()
            self._add_node()
            self.supervisor.start()
            self._restore_unacked()
            self._login()
            self._add_consumers(concurrency)
            self.supervisor.start()
        except (ChildFailed, OSError) as e:
            self._report(f"could not start: {e}")
            self.supervisor.stop()
            return 1
        self._write_runtime()
        self._print_banner()
        try:
            self.supervisor.run()
        finally:
            self._report("stopping: watcher, api, worker (running jobs finish), node, redis")
            self.supervisor.stop()
            self._clear_runtime()
            self._report("stopped")
        return 0

    def _print_banner(self) -> None:
        width = max(len(name) for name, _ in self.lines)
        click.echo("substra-worker is up")
        for name, where in self.lines:
            click.echo(f"  {name.ljust(width)}  {where}")
        click.echo(f"  {'Logs'.ljust(width)}  {self.state_dir / 'logs'}")
        click.echo("Look at jobs:  substra-worker jobs   (or substra-worker job ID)")
        click.echo("Stop:          Ctrl-C")
        sys.stdout.flush()
