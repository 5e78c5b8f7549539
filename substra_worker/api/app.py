"""The HTTP API as a WSGI application (werkzeug routing), served by waitress.

``ApiApp`` maps each route onto one ``Submitter`` or status store call and
turns every refusal into ``{"message": ...}`` with a 4xx status in one place
(``handle``); only a bug gives a 500. Every route but ``/healthz`` and the
dashboard page and its files needs ``Authorization: Bearer <api token>``.
``ApiServer`` binds the port and serves until ``stop()``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import redis
from kombu.exceptions import OperationalError as BrokerError
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from substra_worker.api import dashboard, listing
from substra_worker.api.auth import check_settings, token_from_header, token_matches
from substra_worker.api.health import Canary, fast_client
from substra_worker.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from substra_worker.api.metrics import MetricsExporter
from substra_worker.api.openapi import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    OPERATION_NAMES,
    SERVICE_PATTERN,
    STATES,
    build_spec,
)
from substra_worker.envelope import new_job_id
from substra_worker.jobs import JobNotFound, JobState, JobStateError
from substra_worker.sdk.exceptions import InvalidInput
from substra_worker.settings import Settings
from substra_worker.submitter import Submitter
from substra_worker.wsgi import JsonApp, WaitressServer

log = logging.getLogger(__name__)

PRODUCER = "api"  # the producer of jobs submitted over HTTP; a service's own: "api:<name>"
SERVICE_RE = re.compile(SERVICE_PATTERN)  # the <name> a service may give
MAX_BODY_BYTES = 16 * 1024**2  # bytes: largest job envelope (an add_data_samples of many paths)
PUBLIC = frozenset({"dashboard", "static", "healthz"})  # endpoints served without a token
JSON_TYPES = ("application/json", "")  # accepted request body types ("": none given)


class ApiError(Exception):
    """Raised by a handler to answer ``status`` with ``{"message": ..., **extra}``."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def build_url_map() -> Map:
    return Map(
        [
            Rule("/", methods=["GET"], endpoint="dashboard"),
            Rule("/static/<name>", methods=["GET"], endpoint="static"),
            Rule("/healthz", methods=["GET"], endpoint="healthz"),
            Rule("/openapi.json", methods=["GET"], endpoint="openapi"),
            Rule("/metrics", methods=["GET"], endpoint="metrics"),
            Rule("/jobs", methods=["GET"], endpoint="list_jobs"),
            Rule("/jobs", methods=["POST"], endpoint="submit"),
            Rule("/jobs/<job_id>", methods=["GET"], endpoint="get_job"),
            Rule("/jobs/<job_id>/retry", methods=["POST"], endpoint="retry"),
            Rule("/jobs/<job_id>/cancel", methods=["POST"], endpoint="cancel"),
        ],
        strict_slashes=True,
    )


class ApiApp(JsonApp):
    """The WSGI application over one ``Submitter`` (and its status store)."""

    log = log

    def __init__(self, settings: Settings, *, submitter: Submitter | None = None):
        self.token = check_settings(settings)
        self.settings = settings
        self.submitter = submitter or Submitter(settings, producer=PRODUCER)
        self.store = self.submitter.store
        self._probe_redis = fast_client(settings.redis_url or "")
        self.canary = Canary(self.submitter.app, self._probe_redis, prefix=self.store.prefix)
        self.metrics = MetricsExporter(self.store)
        self.url_map = build_url_map()
        self._spec = json.dumps(build_spec()).encode()

    def close(self) -> None:
        self._probe_redis.close()
        self.submitter.close()

    # --- the one place errors become answers ------------------------------------------

    def answer(self, request: Request, error: Exception) -> Response:
        if isinstance(error, ApiError):
            response = json_response(error.body(), error.status)
            if error.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="substra-worker"'
            return response
        if isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            self.log.warning("Redis unreachable on %s %s: %s", request.method, request.path, error)
            return json_response({"message": "the status store (Redis) is unreachable"}, 503)
        if isinstance(error, BrokerError):
            self.log.warning("broker unreachable on %s %s: %s", request.method, request.path, error)
            return json_response({"message": "the broker (Redis) is unreachable"}, 503)
        response = super().answer(request, error)
        response.headers["Cache-Control"] = "no-store"  # as every JSON answer of this API
        return response

    def _finish(self, response: Response) -> None:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")

    def _dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        endpoint, args = adapter.match()
        if endpoint not in PUBLIC:
            self._authenticate(request)
        return getattr(self, f"on_{endpoint}")(request, **args)

    def _authenticate(self, request: Request) -> None:
        given = token_from_header(request.headers.get("Authorization"))
        if given is None:
            raise ApiError(401, "an API token is required: 'Authorization: Bearer <token>'")
        if not token_matches(given, self.token):
            raise ApiError(401, "the API token is not valid")

    # --- public pages -------------------------------------------------------------------

    def on_dashboard(self, request: Request) -> Response:
        response = Response(dashboard.page(), mimetype="text/html")
        response.headers["Content-Security-Policy"] = dashboard.CSP
        response.headers["Cache-Control"] = "no-cache"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def on_static(self, request: Request, name: str) -> Response:
        found = dashboard.static_file(name)
        if found is None:
            raise ApiError(404, f"no static file {name!r}")
        content, mimetype = found
        response = Response(content, content_type=mimetype)
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    def on_healthz(self, request: Request) -> Response:
        health = self.canary.check(self.settings.api_health_timeout)
        return json_response(health.body, 200 if health.ok else 503)

    # --- description and metrics --------------------------------------------------------

    def on_openapi(self, request: Request) -> Response:
        return Response(self._spec, mimetype="application/json")

    def on_metrics(self, request: Request) -> Response:
        response = Response(self.metrics.render(), content_type=METRICS_CONTENT_TYPE)
        response.headers["Cache-Control"] = "no-store"
        return response

    # --- jobs ---------------------------------------------------------------------------

    def on_list_jobs(self, request: Request) -> Response:
        errors: dict[str, list[str]] = {}
        state = request.args.get("state") or None
        if state is not None and state not in STATES:
            errors["state"] = [f"must be one of {', '.join(STATES)}"]
        operation = request.args.get("operation") or None
        if operation is not None and operation not in OPERATION_NAMES:
            errors["operation"] = ["not an operation (see the OpenAPI description)"]
        limit = DEFAULT_LIMIT
        raw_limit = request.args.get("limit")
        if raw_limit not in (None, ""):
            try:
                limit = int(raw_limit)
            except ValueError:
                limit = 0
            if not 1 <= limit <= MAX_LIMIT:
                errors["limit"] = [f"must be an integer from 1 to {MAX_LIMIT}"]
        cursor = request.args.get("cursor") or None
        if cursor is not None:
            try:
                listing.decode_cursor(cursor)
            except listing.BadCursor as e:
                errors["cursor"] = [str(e)]
        if errors:
            field, messages = next(iter(errors.items()))
            raise ApiError(400, f"invalid query: {field}: {messages[0]}", errors=errors)
        page = listing.list_page(
            self.store,
            state=JobState(state) if state else None,
            operation=operation,
            limit=limit,
            cursor=cursor,
        )
        counts = self.store.stats()
        return json_response({"jobs": page.jobs, "next_cursor": page.next_cursor, "counts": counts})

    @staticmethod
    def _producer(name: Any) -> str:
        """``api``, or ``api:<name>`` for a service that names itself.

        The prefix keeps the jobs of the watcher and the CLI out of reach: a
        producer's idempotency keys and references are its own.
        """
        if name is None:
            return PRODUCER
        if not isinstance(name, str) or not SERVICE_RE.fullmatch(name):
            why = "a service name: 1 to 64 letters, digits, '_', '.', '@' or '-'"
            raise ApiError(422, f"invalid job: producer: {why}", errors={"producer": [why]})
        return f"{PRODUCER}:{name}"

    def on_submit(self, request: Request) -> Response:
        body = self._json_body(request)
        if not isinstance(body, dict):
            raise ApiError(
                422,
                "invalid job: a job envelope is a JSON object",
                errors={"_schema": ["a job envelope is a JSON object"]},
            )
        producer = self._producer(body.pop("producer", None))
        if "id" in body:
            why = "set by the queue; use idempotency_key to make a submission safe to repeat"
            raise ApiError(422, f"invalid job: id: {why}", errors={"id": [why]})
        envelope = {**body, "id": new_job_id()}
        try:
            job = self.submitter.submit_envelope(envelope, producer=producer)
        except InvalidInput as e:
            raise ApiError(422, str(e), errors=e.errors or {}) from e
        except RecursionError as e:
            raise ApiError(422, "invalid job: the payload is nested too deeply") from e
        except BrokerError as e:
            raise ApiError(
                503,
                "the job was recorded but its message could not be sent: it is failed and "
                "can be retried",
                job_id=envelope["id"],
            ) from e
        # a fresh id was given: another id means the idempotency key's existing job
        created = job.id == envelope["id"]
        location = {"Location": f"jobs/{job.id}"}
        return json_response(listing.full(job.to_dict()), 201 if created else 200, location)

    def on_get_job(self, request: Request, job_id: str) -> Response:
        return json_response(listing.full(self._job(job_id).to_dict()))

    def on_retry(self, request: Request, job_id: str) -> Response:
        self._job(job_id)
        try:
            job = self.submitter.retry(job_id)
        except JobNotFound as e:
            raise ApiError(404, f"no job {job_id}") from e
        except JobStateError as e:
            raise ApiError(409, str(e)) from e
        return json_response(listing.full(job.to_dict()))

    def on_cancel(self, request: Request, job_id: str) -> Response:
        self._job(job_id)
        try:
            job = self.submitter.cancel(job_id)
        except JobNotFound as e:
            raise ApiError(404, f"no job {job_id}") from e
        except JobStateError as e:
            raise ApiError(409, str(e)) from e
        return json_response(listing.full(job.to_dict()))

    # --- helpers ------------------------------------------------------------------------

    def _job(self, job_id: str) -> Any:
        if not listing.JOB_ID_RE.match(job_id):
            raise ApiError(404, f"no job {job_id[:64]!r}: a job id is 32 hexadecimal characters")
        try:
            return self.submitter.get_job(job_id)
        except JobNotFound as e:
            raise ApiError(404, f"no job {job_id}") from e

    @staticmethod
    def _json_body(request: Request) -> Any:
        if request.mimetype not in JSON_TYPES:
            raise ApiError(415, f"the body must be application/json, not {request.mimetype}")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise ApiError(413, f"the body is limited to {MAX_BODY_BYTES} bytes")
        raw = request.stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, f"the body is limited to {MAX_BODY_BYTES} bytes")
        if not raw.strip():
            raise ApiError(400, "a JSON body is required")
        try:
            return json.loads(raw, parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ApiError(400, f"the body is not valid JSON: {e}") from e


class ApiServer(WaitressServer):
    """``ApiApp`` behind waitress: bind, ``run()`` until ``stop()``, then close."""

    name = "substra-worker-api"

    def __init__(self, settings: Settings, *, app: ApiApp | None = None, threads: int = 8):
        self.app = app or ApiApp(settings)
        try:
            self._bind(
                self.app,
                host=settings.api_host,
                port=settings.api_port,
                threads=threads,
                max_request_body_size=MAX_BODY_BYTES + 1024,
            )
        except BaseException:
            self.app.close()
            raise

    def _on_shutdown(self) -> None:
        self.app.close()
