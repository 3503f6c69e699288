"""Every way a lost database or Redis surfaces in a request answers 503 problem+json with
`Retry-After` (shared/errors.py), whether SQLAlchemy wrapped the driver's error or code on
a raw connection met it directly; a bug in a statement stays a 500."""

from __future__ import annotations

import sqlite3

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from redis import exceptions as redis_errors
from sqlalchemy import exc as sa

from shared.errors import install_error_handlers


class _Orig(Exception):
    pass


def _app(error: BaseException) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/")
    async def fail() -> None:
        raise error

    return app


def _invalidated() -> sa.DBAPIError:
    error = sa.DBAPIError("SELECT 1", {}, _Orig("server closed the connection"))
    error.connection_invalidated = True
    return error


UNAVAILABLE = {
    "sqlalchemy operational": sa.OperationalError("SELECT 1", {}, _Orig("refused")),
    "sqlalchemy interface": sa.InterfaceError("SELECT 1", {}, _Orig("connection is closed")),
    "sqlalchemy invalidated": _invalidated(),
    "sqlalchemy pool timeout": sa.TimeoutError("QueuePool limit reached"),
    "psycopg operational (raw connection)": psycopg.OperationalError("connection refused"),
    "psycopg interface (raw connection)": psycopg.InterfaceError("the connection is closed"),
    "sqlite locked (raw connection)": sqlite3.OperationalError("database is locked"),
    "redis connection": redis_errors.ConnectionError("Error 111 connecting"),
    "redis timeout": redis_errors.TimeoutError("Timeout reading from socket"),
    "redis loading": redis_errors.BusyLoadingError("Redis is loading the dataset"),
    "redis read-only replica": redis_errors.ReadOnlyError("You can't write against a replica"),
}


@pytest.mark.parametrize("error", UNAVAILABLE.values(), ids=UNAVAILABLE.keys())
async def test_a_lost_dependency_answers_503_with_retry_after(error: BaseException) -> None:
    transport = httpx.ASGITransport(app=_app(error), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://koppel") as client:
        response = await client.get("/")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.json()["type"] == "urn:koppel:problem:unavailable"


BUGS = {
    "sqlalchemy programming": sa.ProgrammingError("SELEC 1", {}, _Orig("syntax error")),
    "redis wrong type": redis_errors.ResponseError("WRONGTYPE Operation against a key"),
}


@pytest.mark.parametrize("error", BUGS.values(), ids=BUGS.keys())
async def test_a_broken_statement_stays_a_500(error: BaseException) -> None:
    transport = httpx.ASGITransport(app=_app(error), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://koppel") as client:
        response = await client.get("/")
    assert response.status_code == 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
