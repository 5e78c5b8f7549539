"""Celery application and tasks: ``celery -A substra_worker.tasks worker`` runs a worker.

The task modules (``operations``, ``follow``) are imported by the worker at
start-up (the app's ``include``), not by producers, which send messages by
task name only.
"""

from substra_worker.tasks.app import app

__all__ = ["app"]
