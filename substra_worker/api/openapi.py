"""The OpenAPI 3 description of the API, served at ``/openapi.json``.

Written by hand from the same constants the code uses (operations, states,
patterns, limits), so a service in any language can generate its client from
it, and the schemathesis tests hold the server to it.
"""

from __future__ import annotations

from typing import Any

from substra_worker import __version__
from substra_worker.envelope import JOB_ID_RE, OPERATIONS, PROFILE_RE
from substra_worker.jobs import JobState

MAX_LIMIT = 500  # jobs per page
DEFAULT_LIMIT = 50
STATES = [s.value for s in JobState]
OPERATION_NAMES = sorted(OPERATIONS)
JOB_ID_PATTERN = JOB_ID_RE.pattern
SERVICE_PATTERN = r"^[A-Za-z0-9_.@\-]{1,64}$"  # a service naming itself in a job

_NULLABLE_STRING = {"type": "string", "nullable": True}
_NULLABLE_NUMBER = {"type": "number", "nullable": True}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, ref: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


UNAUTHORIZED = _error("Missing or wrong API token.")
UNAVAILABLE = _error("Redis or the broker cannot be reached.")
JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
    "description": "The job's id (32 hexadecimal characters).",
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": {"type": "string"},
            "errors": {
                "type": "object",
                "description": "Field-level errors: dotted field name -> messages.",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        },
    },
    "Options": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "exist_ok": {"type": "boolean", "default": False},
            "local": {"type": "boolean", "default": True},
            "destination": {
                **_NULLABLE_STRING,
                "description": "Download folder (download_* operations only).",
            },
        },
    },
    "JobEnvelope": {
        "type": "object",
        "description": (
            "A job: a Client write method and its input. The payload is the method's data "
            "dict for add_* operations, and its named arguments otherwise "
            "({compute_plan_id, data}, {dataset_key, objective_key}, {key}...). A payload "
            "value '$job:<id>' stands for the key another job submitted over HTTP produces. "
            "Jobs submitted over HTTP are recorded as producer 'api', or 'api:<producer>' "
            "when the envelope names its service: idempotency keys and references are "
            "scoped to the producer."
        ),
        "required": ["operation", "payload"],
        "additionalProperties": False,
        "example": {
            "operation": "link_dataset_with_objective",
            "payload": {"dataset_key": "a1" * 32, "objective_key": "b2" * 32},
            "idempotency_key": "link-a1-b2",
        },
        "properties": {
            "operation": {"type": "string", "enum": OPERATION_NAMES},
            "payload": {"type": "object"},
            "options": {"$ref": "#/components/schemas/Options"},
            "target": {
                **_NULLABLE_STRING,
                "pattern": PROFILE_RE,
                "description": "A ~/.substra profile of the workers; null: their node.",
            },
            "idempotency_key": {
                **_NULLABLE_STRING,
                "minLength": 1,
                "maxLength": 256,
                "description": "Submitting the same key again returns the existing job.",
            },
            "references": {
                "type": "array",
                "items": {"type": "string", "pattern": JOB_ID_PATTERN},
                "description": "Extra jobs to wait for.",
            },
            "follow": {"type": "boolean", "default": False},
            "producer": {
                "type": "string",
                "pattern": SERVICE_PATTERN,
                "description": "The calling service's name: the job's producer is 'api:<name>'.",
            },
        },
    },
    "JobError": {
        "type": "object",
        "nullable": True,
        "properties": {
            "type": {"type": "string"},
            "message": {"type": "string"},
            "retryable": {"type": "boolean"},
            "status": {"type": "integer"},
        },
    },
    "JobSummary": {
        "type": "object",
        "required": ["id", "operation", "state", "attempt_count"],
        "properties": {
            "id": {"type": "string", "pattern": JOB_ID_PATTERN},
            "operation": {"type": "string", "enum": OPERATION_NAMES},
            "producer": _NULLABLE_STRING,
            "source": {**_NULLABLE_STRING, "description": "The sample folder(s) a job reads."},
            "state": {"type": "string", "enum": STATES},
            "target": _NULLABLE_STRING,
            "idempotency_key": _NULLABLE_STRING,
            "references": {"type": "array", "items": {"type": "string"}},
            "follow": {"type": "boolean"},
            "attempt_count": {"type": "integer", "minimum": 0},
            "created_at": _NULLABLE_NUMBER,
            "updated_at": _NULLABLE_NUMBER,
            "started_at": _NULLABLE_NUMBER,
            "finished_at": _NULLABLE_NUMBER,
            "next_attempt_at": _NULLABLE_NUMBER,
            "progress": {
                "type": "object",
                "nullable": True,
                "description": "done/total of a bulk upload, or of a followed tuple or plan.",
            },
            "result": {
                "type": "object",
                "nullable": True,
                "description": "key (or count of sample keys) of what the job produced.",
            },
            "error": {"$ref": "#/components/schemas/JobError"},
        },
    },
    "Job": {
        "type": "object",
        "description": "The whole job record.",
        "required": ["id", "operation", "state", "envelope", "history", "attempts"],
        "properties": {
            "id": {"type": "string", "pattern": JOB_ID_PATTERN},
            "operation": {"type": "string", "enum": OPERATION_NAMES},
            "producer": _NULLABLE_STRING,
            "source": _NULLABLE_STRING,
            "state": {"type": "string", "enum": STATES},
            "envelope": {"type": "object"},
            "attempt_count": {"type": "integer", "minimum": 0},
            "result": {
                "type": "object",
                "nullable": True,
                "description": "key, keys (add_data_samples) and the node's answer.",
            },
            "error": {"$ref": "#/components/schemas/JobError"},
            "progress": {"type": "object", "nullable": True},
            "history": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "at": {"type": "number"},
                        "state": {"type": "string"},
                        "message": {"type": "string"},
                    },
                },
            },
            "attempts": {"type": "array", "items": {"type": "object"}},
        },
    },
    "JobPage": {
        "type": "object",
        "required": ["jobs", "next_cursor", "counts"],
        "properties": {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/JobSummary"}},
            "next_cursor": {
                **_NULLABLE_STRING,
                "description": "Pass as ?cursor= for the next page; null on the last page.",
            },
            "counts": {
                "type": "object",
                "description": "Number of jobs per state (all operations).",
                "properties": {s: {"type": "integer"} for s in STATES},
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "message": {"type": "string"},
            "round_trip": {"type": "number"},
            "checked_in": {"type": "number"},
            "queue_depth": {"type": "integer"},
        },
    },
}


def _job_action(summary: str, description: str, conflict: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "description": description,
            "parameters": [JOB_ID],
            "responses": {
                "200": _json("The job after the action.", "Job"),
                "401": UNAUTHORIZED,
                "404": _error("No job has this id."),
                "409": _error(conflict),
                "503": UNAVAILABLE,
            },
        }
    }


def build_spec() -> dict[str, Any]:
    """The OpenAPI document (a fresh dict each call)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "substra-worker API",
            "version": __version__,
            "description": (
                "Submit Substra write calls as durable background jobs and follow them. "
                "Every route but /healthz and the dashboard page needs "
                "'Authorization: Bearer <api token>' (SUBSTRA_WORKER_API_TOKEN). "
                'Every error is JSON {"message": ...}.'
            ),
        },
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
        "security": [{"bearerAuth": []}],
        "paths": {
            "/jobs": {
                "get": {
                    "summary": "List jobs, newest first",
                    "description": (
                        "Jobs filtered by state and operation; with a state filter they are "
                        "ordered by last update, otherwise by creation."
                    ),
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {"type": "string", "enum": STATES},
                        },
                        {
                            "name": "operation",
                            "in": "query",
                            "schema": {"type": "string", "enum": OPERATION_NAMES},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_LIMIT,
                                "default": DEFAULT_LIMIT,
                            },
                        },
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json("A page of jobs.", "JobPage"),
                        "400": _error("A query parameter is not valid."),
                        "401": UNAUTHORIZED,
                        "503": UNAVAILABLE,
                    },
                },
                "post": {
                    "summary": "Submit a job",
                    "description": (
                        "Validated with the Client's schemas before anything is recorded: on "
                        "error nothing is queued or stored. Files and folders named in the "
                        "payload are read by the workers and must exist on their machines."
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/JobEnvelope"}
                            }
                        },
                    },
                    "responses": {
                        "201": _json("The job was recorded and queued (or waits).", "Job"),
                        "200": _json(
                            "The idempotency key was already used: the existing job.", "Job"
                        ),
                        "400": _error("The body is not JSON."),
                        "401": UNAUTHORIZED,
                        "413": _error("The body is too large."),
                        "415": _error("The body is not application/json."),
                        "422": _error("The job is not valid; see errors."),
                        "503": UNAVAILABLE,
                    },
                },
            },
            "/jobs/{job_id}": {
                "get": {
                    "summary": "One job, with its history and attempts",
                    "parameters": [JOB_ID],
                    "responses": {
                        "200": _json("The job.", "Job"),
                        "401": UNAUTHORIZED,
                        "404": _error("No job has this id."),
                        "503": UNAVAILABLE,
                    },
                }
            },
            "/jobs/{job_id}/retry": _job_action(
                "Retry a failed job",
                "Queues it again (or makes it wait again for its references).",
                "The job is not failed, or a job it references failed.",
            ),
            "/jobs/{job_id}/cancel": _job_action(
                "Cancel a job that has not started",
                "Only queued or waiting jobs can be canceled; the jobs waiting on it fail.",
                "The job has started or finished.",
            ),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "The Prometheus text format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": UNAUTHORIZED,
                        "503": UNAVAILABLE,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Whether a worker consumes jobs",
                    "description": (
                        "Sends a canary message through the broker and waits a few seconds "
                        "for a worker to run it. No token needed."
                    ),
                    "security": [],
                    "responses": {
                        "200": _json("A worker consumed the canary.", "Health"),
                        "503": _json("No worker consumed the canary in time.", "Health"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "401": UNAUTHORIZED,
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "The dashboard page",
                    "description": (
                        "Served without a token; its JavaScript calls the API with the token "
                        "kept in the browser's localStorage (entered once in the page, or "
                        "passed once as ?token=, which the page removes from the address)."
                    ),
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "HTML",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
    }
