"""Celery application and tasks (see issue D)."""
