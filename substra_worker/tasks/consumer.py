"""The worker's message consumer: Celery's, made to survive one way of losing Redis.

When Redis goes away while the worker holds a delivered message, Celery 5.7
first collects the broken connection (which drops kombu's transport) and then
closes it; closing its channel a second time makes kombu rebuild a Redis pool
from the dropped transport and fail with ``AttributeError`` (``'NoneType'
object has no attribute 'hostname'``). Celery does not expect that error
there: the worker stopped ("Unrecoverable error") and queued jobs stayed
queued until someone restarted it. The connection is already released by
then, so this consumer logs the error and goes on reconnecting, as Celery does
for connection errors.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

logger = logging.getLogger(__name__)


class Consumer(CeleryConsumer):
    def on_connection_error_after_connected(self, exc: Any) -> None:
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as e:
            logger.warning(
                "the lost broker connection could not be closed cleanly (%r); reconnecting", e
            )
