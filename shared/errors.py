"""Errors as RFC 9457 problem details, rendered by one handler per app.

Services raise `KoppelError` subclasses; every other exception becomes a problem
document too, so no client ever sees an HTML error or a stack trace.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import asyncpg
import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import exceptions as redis_errors
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.openapi import Document, amend, operations

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("koppel.errors")
# Seconds a client is asked to wait when the database or Redis cannot be reached.
UNAVAILABLE_RETRY_AFTER_S = 1
# Redis errors that mean "not reachable right now" (a restart, a failover, a full pool),
# not a bug in the command: answered 503, like a database that cannot be reached.
REDIS_UNAVAILABLE = (
    redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError,
    redis_errors.ClusterDownError, redis_errors.TryAgainError,
)


class DatabaseUnreachable(Exception):
    """A driver used without SQLAlchemy (the sync read pool's asyncpg) could not reach the
    database or lost it: answered 503 like the other drivers' such errors."""


# The drivers' own errors, for code that works on a raw DBAPI connection (no SQLAlchemy
# wrapping): a refused or lost connection, a locked SQLite file.
DRIVER_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, sqlite3.OperationalError,
                      DatabaseUnreachable)


def problem_type(slug: str) -> str:
    """The stable `type` URI of a problem."""
    return f"urn:koppel:problem:{slug}"


class KoppelError(Exception):
    """A domain error with its HTTP status and a stable problem type."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra
        self.headers: dict[str, str] = {}


class NotFound(KoppelError):
    status, slug, title = 404, "not-found", "Not found"


class Unauthorized(KoppelError):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Forbidden(KoppelError):
    status, slug, title = 403, "forbidden", "Forbidden"


class InsufficientScope(Forbidden):
    slug, title = "insufficient-scope", "Insufficient scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"this call needs the scope {scope!r}", required_scope=scope)
        self.headers["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{scope}"'


class Conflict(KoppelError):
    status, slug, title = 409, "conflict", "Conflict"


class Invalid(KoppelError):
    status, slug, title = 422, "validation-error", "Invalid input"


class RateLimited(KoppelError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail or f"try again in {retry_after} seconds", retry_after=retry_after)
        self.headers["Retry-After"] = str(retry_after)


class Unavailable(KoppelError):
    status, slug, title = 503, "unavailable", "Service unavailable"


def problem(
    status: int, slug: str, title: str, detail: str, *, headers=None, **extra: Any
) -> JSONResponse:
    body = {"type": problem_type(slug), "title": title, "status": status, "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_STATUS_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document (`application/problem+json`); more members "
                   "may follow.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "A stable URI naming the kind of problem, "
                                                  "`urn:koppel:problem:<slug>`"},
        "title": {"type": "string", "description": "The kind of problem, for people"},
        "status": {"type": "integer", "description": "The HTTP status"},
        "detail": {"type": "string", "description": "This occurrence, for people"},
        "errors": {"type": "array", "description": "422: each invalid input",
                   "items": {"type": "object", "properties": {
                       "loc": {"type": "array", "items": {}},
                       "msg": {"type": "string"}, "type": {"type": "string"}}}},
        "required_scope": {"type": "string",
                           "description": "403 insufficient-scope: the scope the call needs"},
        "retry_after": {"type": "integer",
                        "description": "429: seconds to wait (also in `Retry-After`)"},
    },
    "additionalProperties": True,
}
PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what the handlers below send: FastAPI documents
    its 422 as `application/json` `HTTPValidationError`, but every validation error is
    a problem document."""

    def change(document: Document) -> None:
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        for _, _, operation in operations(document):
            response = operation.get("responses", {}).get("422")
            if response is not None:
                response["content"] = PROBLEM_CONTENT
        # FastAPI's own validation schemas, once nothing refers to them any more.
        fastapi_own = ("HTTPValidationError", "ValidationError")
        rest = json.dumps([document["paths"],
                           {k: v for k, v in schemas.items() if k not in fastapi_own}])
        for name in fastapi_own:
            if f'/{name}"' not in rest:
                schemas.pop(name, None)

    amend(app, change)


def _unavailable(dependency: str, error: str) -> JSONResponse:
    """503 with `Retry-After`: a dependency is unreachable for now; nothing was answered
    from a guess (a status, a rate limit or a session that could not be read)."""
    log.warning(f"{dependency} unavailable", error=error)
    subject = "the database" if dependency == "database" else dependency
    return problem(503, "unavailable", "Service unavailable",
                   f"{subject} is unavailable; try again",
                   headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)})


def install_error_handlers(app: FastAPI) -> None:
    """Render every error of `app` as problem+json (and document them so)."""
    _document_problems(app)

    @app.exception_handler(KoppelError)
    async def _koppel(_request: Request, exc: KoppelError) -> JSONResponse:
        return problem(
            exc.status, exc.slug, exc.title, exc.detail, headers=exc.headers or None, **exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return problem(422, "validation-error", "Invalid input", "the request is invalid",
                       errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug, title = _STATUS_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
        return problem(exc.status_code, slug, title, str(exc.detail),
                       headers=getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    async def _db_down(_request: Request, exc: OperationalError) -> JSONResponse:
        return _unavailable("database", type(exc.orig).__name__)

    @app.exception_handler(PoolTimeout)
    async def _db_pool_exhausted(_request: Request, exc: PoolTimeout) -> JSONResponse:
        return _unavailable("database", type(exc).__name__)

    async def _driver_down(_request: Request, exc: Exception) -> JSONResponse:
        return _unavailable("database", type(exc).__name__)

    for driver_error in DRIVER_UNAVAILABLE:
        app.add_exception_handler(driver_error, _driver_down)

    async def _redis_down(_request: Request, exc: Exception) -> JSONResponse:
        return _unavailable("Redis", type(exc).__name__)

    for redis_error in REDIS_UNAVAILABLE:
        app.add_exception_handler(redis_error, _redis_down)

    def _unstorable(error: str) -> JSONResponse:
        # A value that passed validation but that the database cannot store (a NUL
        # character in PostgreSQL text, a number out of range): the client's input, and
        # the transaction has been rolled back. Schemas should refuse it first.
        log.warning("value refused by the database", error=error)
        return problem(422, "validation-error", "Invalid input",
                       "a value in the request cannot be stored (a NUL character, or a "
                       "number or date out of range)")

    @app.exception_handler(DataError)
    async def _unstorable_orm(_request: Request, exc: DataError) -> JSONResponse:
        return _unstorable(type(exc.orig).__name__)

    @app.exception_handler(asyncpg.DataError)
    async def _unstorable_fast(_request: Request, exc: asyncpg.DataError) -> JSONResponse:
        # The same from the sync API's asyncpg statements (services/sync/read_pool.py).
        return _unstorable(type(exc).__name__)

    @app.exception_handler(DBAPIError)
    async def _db_error(_request: Request, exc: DBAPIError) -> JSONResponse:
        # A connection that died under the statement ("server closed the connection",
        # "the connection is closed"): the pool has dropped it; the next call reconnects.
        if exc.connection_invalidated or isinstance(exc, InterfaceError):
            return _unavailable("database", type(exc.orig).__name__)
        log.error("database error", error=type(exc.orig).__name__)
        return problem(500, "internal", "Internal error", "an internal error occurred")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", error=type(exc).__name__)
        return problem(500, "internal", "Internal error", "an internal error occurred")
