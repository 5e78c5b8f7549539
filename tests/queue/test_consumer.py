"""The worker's consumer goes on reconnecting when closing a lost connection fails in kombu.

That failure (Celery 5.7 collects the broken connection, dropping kombu's
transport, then closes its channel again) depends on where kombu was when Redis
went away, so it cannot be produced on demand: the connection below is a real
kombu connection to a stopped Redis whose ``close`` fails as kombu's does.
"""

from __future__ import annotations

import logging

import pytest
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Connection

from substra_worker.redis_server import BundledRedis
from substra_worker.settings import Settings
from substra_worker.tasks.app import make_app
from substra_worker.tasks.consumer import Consumer


@pytest.fixture
def lost_connection(tmp_path):
    server = BundledRedis(tmp_path / "redis")
    url = server.start()
    connection = Connection(url)
    connection.ensure_connection()
    server.stop()

    def close() -> None:
        # what kombu raises when the dropped transport is asked for a new pool
        connection.close_calls += 1
        raise AttributeError("'NoneType' object has no attribute 'hostname'")

    connection.close_calls = 0
    connection.close = close
    yield url, connection


def consumer_on(cls: type, url: str, connection: Connection):
    """A consumer in the state Celery is in when it handles a lost connection."""
    consumer = cls.__new__(cls)
    consumer.app = make_app(Settings(redis_url=url))
    consumer.connection = connection
    return consumer


def test_celery_s_own_consumer_stops_on_it(lost_connection):
    url, connection = lost_connection
    with pytest.raises(AttributeError, match="hostname"):
        consumer_on(CeleryConsumer, url, connection).on_connection_error_after_connected(
            ConnectionError("Connection closed by server.")
        )


def test_ours_logs_it_and_goes_on(lost_connection, caplog):
    url, connection = lost_connection
    consumer = consumer_on(Consumer, url, connection)
    with caplog.at_level(logging.WARNING, logger="substra_worker.tasks.consumer"):
        consumer.on_connection_error_after_connected(
            ConnectionError("Connection closed by server.")
        )
    assert consumer.connection is None  # released: the restart makes a new one
    assert "could not be closed cleanly" in caplog.text


def test_the_worker_app_uses_it():
    app = make_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert app.conf.worker_consumer == "substra_worker.tasks.consumer:Consumer"
