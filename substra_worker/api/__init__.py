"""The HTTP API and dashboard: jobs from any service, their status at a glance.

``app.ApiApp`` is the WSGI application (routes, authentication, errors),
``app.ApiServer`` serves it with waitress; ``substra-worker api`` runs it.
"""

from substra_worker.api.app import ApiApp, ApiServer

__all__ = ["ApiApp", "ApiServer"]
