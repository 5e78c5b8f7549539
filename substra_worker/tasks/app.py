"""The Celery application, configured from ``Settings``.

Delivery guarantees come from the configuration: a message is acknowledged
only after its job's outcome is recorded (``task_acks_late``), put back when
the process running it dies (``task_reject_on_worker_lost``), fetched one at a
time (prefetch 1), and redelivered by the broker when unacknowledged for
longer than the visibility timeout, which must exceed the longest a task may
run (hard time limit) plus the longest retry countdown.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from substra_worker.settings import Settings, get_settings

logger = logging.getLogger(__name__)

QUEUE = "substra-worker"  # the broker queue every job message goes to
RUN_JOB = "substra_worker.run_job"
FOLLOW_JOB = "substra_worker.follow_job"
TASK_MODULES = ("substra_worker.tasks.operations", "substra_worker.tasks.follow")


def make_app(settings: Settings | None = None, *, include_tasks: bool = True) -> Celery:
    """A Celery app for ``settings``: broker and backend on ``settings.redis_url``.

    Producers only send messages by task name, so they may build an app with
    ``include_tasks=False`` and never import the task modules.
    """
    settings = settings or get_settings()
    check_timeouts(settings)
    app = Celery("substra_worker", include=list(TASK_MODULES) if include_tasks else [])
    restore_interval = max(1, min(10, settings.visibility_timeout // 4))
    app.conf.update(
        broker_url=settings.redis_url,
        result_backend=settings.redis_url,
        task_ignore_result=True,  # outcomes live in our status store, not Celery's
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        worker_concurrency=settings.worker_concurrency,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # sweep for abandoned messages often enough for the visibility timeout
            "unacked_restore_interval": restore_interval,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # ride out a Redis restart
        # a lost broker connection does not cancel running jobs: their outcome is
        # recorded in Redis once it is back, and a redelivery is recognised
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_consumer="substra_worker.tasks.consumer:Consumer",
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_channel_error_retry=True,
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 10,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 2.0,
        },
    )
    return app


def check_timeouts(settings: Settings) -> None:
    """Warn when the visibility timeout could redeliver a job that is still running."""
    longest = settings.task_time_limit + settings.retry_backoff_max + settings.follow_interval
    if settings.visibility_timeout <= longest:
        logger.warning(
            "visibility_timeout (%ss) should exceed task_time_limit + retry_backoff_max "
            "(%ss): a running job could be delivered twice",
            settings.visibility_timeout,
            longest,
        )
    if settings.task_soft_time_limit >= settings.task_time_limit:
        logger.warning("task_soft_time_limit should be below task_time_limit")


def send_job(app: Celery, job_id: str, dispatch: int, countdown: float | None = None) -> None:
    """Send the message that runs ``job_id``; ``dispatch`` must match its record's."""
    _send(app, RUN_JOB, [job_id, dispatch], f"{job_id}-{dispatch}", countdown)


def send_follow(app: Celery, job_id: str, seq: int, countdown: float | None = None) -> None:
    """Schedule the next progress poll of a followed job."""
    _send(app, FOLLOW_JOB, [job_id, seq], f"{job_id}-follow-{seq}", countdown)


def _send(app: Celery, name: str, args: list[Any], task_id: str, countdown: float | None) -> None:
    app.send_task(
        name,
        args=args,
        task_id=task_id,
        queue=QUEUE,
        countdown=countdown if countdown and countdown > 0 else None,
        ignore_result=True,
    )


app = make_app()
