"""The bundled redis-server: a real child process, persistent across restarts."""

from __future__ import annotations

import stat

import pytest
import redis

from substra_worker.redis_server import BundledRedis, RedisServerError


def test_restart_keeps_data_and_port(tmp_path):
    server = BundledRedis(tmp_path / "r")
    url = server.start()
    try:
        client = redis.Redis.from_url(url)
        client.set("kept", "yes")
        client.close()
        port = server.port
        # a crash (SIGKILL) loses nothing written more than a moment before: append-only file
        server.restart()
        assert server.port == port
        assert redis.Redis.from_url(server.url).get("kept") == b"yes"
        assert (tmp_path / "r" / "redis.log").exists()
    finally:
        server.stop()
    assert not server.running()


def test_password_is_required_and_kept_off_the_command_line(tmp_path):
    server = BundledRedis(tmp_path / "r", password="pa:ss/w@rd")
    url = server.start()
    try:
        assert redis.Redis.from_url(url).ping()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=server.port).ping()
        conf = tmp_path / "r" / "redis.conf"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600
        assert "pa:ss/w@rd" not in " ".join(server.process.args)
    finally:
        server.stop()


def test_a_server_that_cannot_start_says_why(tmp_path):
    first = BundledRedis(tmp_path / "a")
    first.start()
    try:
        taken = BundledRedis(tmp_path / "b", port=first.port)
        with pytest.raises(RedisServerError, match="exited"):
            taken.start(timeout=5)
    finally:
        first.stop()
