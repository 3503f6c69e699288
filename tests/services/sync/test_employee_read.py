"""GET /v1/employees/{id} for a connection's token (services/sync/resources/employee_read):
one statement checks the connection, its consent and its reach on every read, so
nothing a revoke, a narrowed consent or a dropped company changes is ever served stale."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from types import SimpleNamespace

import httpx
import psycopg
import pytest
from fastapi.encoders import jsonable_encoder
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, delete

from services.sync.events.audience import audience
from services.sync.resources.employee_read import employee_body
from services.sync.resources.schemas import EmployeeOut
from shared.config import Settings
from shared.db.types import utcnow
from shared.models import Connection, ConnectionCompany, ConnectionStatus, Event
from shared.runtime import Runtime
from shared.status import Subject, all_active, status_key
from tests.fixtures import factories as f
from tests.services.sync.conftest import Tokens
from tests.services.sync.worlds import Data


def _path(data: Data, index: int = 0) -> str:
    return f"/v1/employees/{data.employees[index].id}"


async def test_a_connection_suspended_in_the_database_is_refused_before_any_cache_knows(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    auth = tokens.connection(data.connection, data.app)
    assert (await sync_client.get(_path(data), headers=auth)).status_code == 200
    # No status is published: the status cache still says "active".
    with committing_sessions() as session, session.begin():
        session.get(Connection, data.connection.id).status = ConnectionStatus.SUSPENDED
    response = await sync_client.get(_path(data), headers=auth)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]



async def test_a_connection_past_its_expiry_is_refused_before_the_job_runs(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data, runtime: Runtime,
    committing_sessions: sessionmaker[Session],
) -> None:
    """Tokens fail at `expires_at` itself: the worker's job turns the status `expired`
    later, and meanwhile the status cache (and this process's mirror) still say active."""
    auth = tokens.connection(data.connection, data.app)
    with committing_sessions() as session, session.begin():
        session.get(Connection, data.connection.id).expires_at = utcnow() + timedelta(days=1)
    event = Event(type="employee.updated", environment_id=data.connection.environment_id,
                  debtor_id=data.connection.debtor_id, company_id=data.companies[0].id)
    assert (await sync_client.get(_path(data), headers=auth)).status_code == 200
    listed = f"/v1/companies/{data.companies[0].id}/employees"
    assert (await sync_client.get(listed, headers=auth)).status_code == 200
    async with runtime.async_session() as session:
        assert data.app.id in await audience(session, event)
    with committing_sessions() as session, session.begin():
        connection = session.get(Connection, data.connection.id)
        connection.expires_at = utcnow() - timedelta(seconds=1)
        assert connection.status == ConnectionStatus.ACTIVE
    for path in (_path(data), listed):  # the fast read path and the general one
        response = await sync_client.get(path, headers=auth)
        assert response.status_code == 401, path
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    # No data events for it any more.
    async with runtime.async_session() as session:
        assert data.app.id not in await audience(session, event)
    # The status cache's database fallback does not call it active either.
    subject = (Subject.CONNECTION, str(data.connection.id))
    await runtime.redis.delete(status_key(*subject))
    assert not await all_active(runtime.redis, runtime.async_session, [subject])

async def test_a_narrowed_consent_and_a_dropped_company_show_in_the_next_read(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    auth = tokens.connection(data.connection, data.app, "employee.info.read")
    first = await sync_client.get(_path(data), headers=auth)
    assert first.status_code == 200
    assert first.json()["id"] == str(data.employees[0].id)
    assert first.headers["ratelimit-policy"] and first.headers["etag"]
    with committing_sessions() as session, session.begin():
        session.get(Connection, data.connection.id).scopes = ["company.info.read"]
    narrowed = await sync_client.get(_path(data), headers=auth)
    assert narrowed.status_code == 403
    assert narrowed.json()["required_scope"] == "employee.info.read"
    assert 'error="insufficient_scope"' in narrowed.headers["www-authenticate"]
    with committing_sessions() as session, session.begin():
        session.get(Connection, data.connection.id).scopes = ["employee.info"]
        session.exec(delete(ConnectionCompany).where(
            ConnectionCompany.connection_id == data.connection.id))
    dropped = await sync_client.get(_path(data), headers=auth)
    assert dropped.status_code == 404
    assert dropped.headers["content-type"] == "application/problem+json"


async def test_a_token_lacking_the_scope_gets_403_and_unknown_ids_404(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
) -> None:
    company_only = tokens.connection(data.connection, data.app, "company.info.read")
    response = await sync_client.get(_path(data), headers=company_only)
    assert response.status_code == 403
    assert response.json()["required_scope"] == "employee.info.read"
    auth = tokens.connection(data.connection, data.app)
    missing = await sync_client.get(f"/v1/employees/{uuid.uuid4()}", headers=auth)
    assert missing.status_code == 404
    assert (await sync_client.get("/v1/employees/not-a-uuid", headers=auth)).status_code == 422
    app_token = await sync_client.get(_path(data), headers=tokens.app(data.app))
    assert app_token.status_code == 403
    assert (await sync_client.get(_path(data))).status_code == 401


async def test_the_direct_read_answers_as_fastapis_way_does(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
) -> None:
    """The canonical id is served directly (shared/direct_route.py); the same id as 32 hex
    digits goes through FastAPI's dependency solving: one answer, headers included."""
    auth = tokens.connection(data.connection, data.app)
    employee_id = data.employees[0].id
    direct = await sync_client.get(f"/v1/employees/{employee_id}", headers=auth)
    standard = await sync_client.get(f"/v1/employees/{employee_id.hex}", headers=auth)
    for answer in (direct, standard):
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["ratelimit-policy"].startswith('"app-environment";q=')
        assert answer.headers["ratelimit"].startswith('"connection";r=')
    assert direct.json() == standard.json() == jsonable_encoder(
        EmployeeOut.model_validate(data.employees[0], from_attributes=True))
    assert direct.headers["etag"] == standard.headers["etag"]
    cached = {**auth, "If-None-Match": direct.headers["etag"]}
    for path in (f"/v1/employees/{employee_id}", f"/v1/employees/{employee_id.hex}"):
        not_modified = await sync_client.get(path, headers=cached)
        assert not_modified.status_code == 304, path
        assert "ratelimit" in not_modified.headers


async def test_a_token_naming_another_app_for_the_connection_is_refused(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    with committing_sessions() as session, session.begin():
        other = f.make_app(session, scopes=["employee.info.read"])
    forged_pairing = tokens.connection(data.connection, other, "employee.info.read")
    response = await sync_client.get(_path(data), headers=forged_pairing)
    assert response.status_code == 401


@pytest.mark.postgres_only
async def test_reads_survive_the_database_dropping_their_connections(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data, settings: Settings,
) -> None:
    """The read engine does not ping on checkout: a read on a dead connection retries
    once on a fresh one."""
    auth = tokens.connection(data.connection, data.app)
    # Several reads at once: the pool keeps several idle connections.
    answers = await asyncio.gather(*(sync_client.get(_path(data), headers=auth)
                                     for _ in range(6)))
    assert {answer.status_code for answer in answers} == {200}
    url = make_url(settings.resolved_database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
        dropped = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert dropped >= 1
    # The server's goodbye has reached the idle connections before their next use.
    await asyncio.sleep(0.05)
    for _ in range(4):
        response = await sync_client.get(_path(data), headers=auth)
        assert response.status_code == 200, response.text
        assert response.json()["id"] == str(data.employees[0].id)


def test_the_fast_body_is_the_employee_schema_document() -> None:
    """The one-query read writes `EmployeeOut`'s JSON by hand: it must stay the same
    document as the schema's, field for field (a field added to the schema included)."""
    row = SimpleNamespace(id=uuid.uuid4(), company_id=uuid.uuid4(), number="0042",
                          first_name="Anna", last_name="de Vries",
                          birth_date=date(1990, 2, 28), email="anna@example.test")
    expected = jsonable_encoder(EmployeeOut.model_validate(row, from_attributes=True))
    assert employee_body(row) == expected
    assert employee_body(SimpleNamespace(**{**vars(row), "birth_date": None, "email": None})
                         ) == {**expected, "birth_date": None, "email": None}
