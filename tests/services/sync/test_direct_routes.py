"""The sync routes served without FastAPI's dependency solving (shared/direct_route.py,
services/sync/direct.py): the list of a company's employees, the change feed and the
employee update answer exactly as FastAPI's own handlers of the same routes do, run the
same policy, and leave input FastAPI refuses to FastAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, delete, select

from services.sync.app import create_app
from services.sync.resources import employee_list, employee_read, employee_write, endpoints
from shared.config import Settings
from shared.db.types import utcnow
from shared.models import Connection, ConnectionCompany, ConnectionStatus, Employee, Event
from shared.openapi import api_routes
from shared.policy import CallerKind
from shared.policy.dependency import route_operation
from tests.fixtures import factories as f
from tests.services.conftest import running
from tests.services.sync.conftest import Tokens
from tests.services.sync.worlds import Data


class Sync:
    """The sync app with a client, and a switch to FastAPI's own handlers: while the app
    has any dependency override, a direct route answers FastAPI's way."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app, self.client = app, client

    async def both(self, method: str, path: str, **options: Any
                   ) -> tuple[httpx.Response, httpx.Response]:
        direct = await self.client.request(method, path, **options)
        self.app.dependency_overrides[_unused] = _unused
        try:
            standard = await self.client.request(method, path, **options)
        finally:
            self.app.dependency_overrides.clear()
        return direct, standard


def _unused() -> None:
    """A dependency no route has: overriding it only switches to FastAPI's handlers."""


@pytest.fixture
async def sync(settings: Settings, committing_sessions: sessionmaker[Session]
               ) -> AsyncIterator[Sync]:
    app = create_app(settings)
    async with running(app) as client:
        yield Sync(app, client)


@pytest.fixture
def direct_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The operations the direct handlers authorized, in order (the real functions still
    run): on the policy's general path, or on a connection's fast path on PostgreSQL."""
    calls: list[str] = []
    general = endpoints.authorized_on
    fast = {(employee_write, "update_connection_employee"): "employees.update",
            (employee_list, "connection_employees"): "employees.list"}

    def spy(request, caller, operation):  # type: ignore[no-untyped-def]
        calls.append(operation)
        return general(request, caller, operation)

    def spying(function, operation):  # type: ignore[no-untyped-def]
        def spy_fast(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(operation)
            return function(*args, **kwargs)
        return spy_fast

    monkeypatch.setattr(endpoints, "authorized_on", spy)
    for (module, name), operation in fast.items():
        monkeypatch.setattr(module, name, spying(getattr(module, name), operation))
    return calls


def _same(direct: httpx.Response, standard: httpx.Response) -> None:
    assert direct.status_code == standard.status_code
    assert direct.json() == standard.json()
    for name in ("content-type", "cache-control", "etag", "link", "ratelimit-policy"):
        assert direct.headers.get(name) == standard.headers.get(name), name
    assert direct.headers["ratelimit"].split(";")[0] == standard.headers["ratelimit"].split(
        ";")[0]


async def test_the_employee_list_answers_as_fastapis_way_does(
    sync: Sync, tokens: Tokens, data: Data, committing_sessions: sessionmaker[Session],
    direct_calls: list[str],
) -> None:
    company = data.companies[0]
    with committing_sessions() as session, session.begin():
        for _ in range(3):
            f.make_employee(session, company)
    auth = tokens.connection(data.connection, data.app)
    path = f"/v1/companies/{company.id}/employees"
    first, standard = await sync.both("GET", path, params={"limit": 2}, headers=auth)
    assert direct_calls == ["employees.list"]
    assert first.status_code == 200 and len(first.json()["data"]) == 2
    assert first.headers["link"].endswith('rel="next"')
    _same(first, standard)
    cursor = first.json()["next_cursor"]
    rest, standard = await sync.both("GET", path, params={"limit": 2, "cursor": cursor},
                                     headers=auth)
    _same(rest, standard)
    assert len(rest.json()["data"]) == 2 and rest.json()["next_cursor"] is None
    seen = [e["id"] for e in first.json()["data"] + rest.json()["data"]]
    assert len(set(seen)) == 4
    # Outside reach (another debtor's company) and a forged cursor: the same refusals.
    for other in (f"/v1/companies/{data.companies[2].id}/employees",
                  f"{path}?cursor=forged.cursor"):
        direct, standard = await sync.both("GET", other, headers=auth)
        assert direct.status_code in (400, 404)
        assert direct.status_code == standard.status_code
        assert direct.json() == standard.json()


async def test_input_fastapi_refuses_goes_to_fastapi_and_counts_once(
    sync: Sync, tokens: Tokens, data: Data, direct_calls: list[str],
) -> None:
    auth = tokens.connection(data.connection, data.app)
    path = f"/v1/companies/{data.companies[0].id}/employees"
    for params in ({"limit": 0}, {"limit": 201}, {"limit": "ten"}):
        answer = await sync.client.get(path, params=params, headers=auth)
        assert answer.status_code == 422, params
    no_caller = await sync.client.get(path, params={"limit": "ten"})
    assert no_caller.status_code == 401  # FastAPI's order: the caller before parameters
    patch = f"/v1/employees/{data.employees[0].id}"
    for body in ({"first_name": ""}, {"unknown": 1}, {"birth_date": "not a date"}):
        assert (await sync.client.patch(patch, json=body, headers=auth)).status_code == 422
    not_json = await sync.client.patch(patch, content=b"first_name=A",
                                       headers={**auth, "Content-Type": "text/plain"})
    assert not_json.status_code == 422
    assert direct_calls == []
    # Each request above was counted once against the connection's budget.
    answer = await sync.client.get(path, headers=auth)
    assert answer.headers["ratelimit"].startswith('"connection";r=')
    remaining = int(answer.headers["ratelimit"].split("r=")[1].split(";")[0])
    assert remaining == 600 - 8


async def test_the_update_answers_as_fastapis_way_does_and_keeps_if_match(
    sync: Sync, tokens: Tokens, data: Data, committing_sessions: sessionmaker[Session],
    direct_calls: list[str],
) -> None:
    auth = tokens.connection(data.connection, data.app)
    path = f"/v1/employees/{data.employees[0].id}"
    etag = (await sync.client.get(path, headers=auth)).headers["etag"]
    direct, standard = await sync.both("PATCH", path, json={"last_name": "Visser"},
                                       headers={**auth, "If-Match": etag})
    assert direct_calls == ["employees.update"]
    assert direct.status_code == 200 and direct.json()["last_name"] == "Visser"
    # The direct write changed the record: FastAPI's attempt with the old ETag is refused.
    assert standard.status_code == 412
    current = (await sync.client.get(path, headers=auth)).headers["etag"]
    assert direct.headers["etag"] == current
    stale, standard = await sync.both("PATCH", path, json={"last_name": "Bakker"},
                                      headers={**auth, "If-Match": etag})
    assert stale.status_code == standard.status_code == 412
    assert stale.json() == standard.json()
    same, standard = await sync.both("PATCH", path, json={"last_name": "Visser"},
                                     headers={**auth, "If-Match": current})
    _same(same, standard)
    with committing_sessions() as session:
        events = session.exec(select(Event).where(Event.type == "employee.updated")).all()
    assert [e.data["changed_fields"] for e in events] == [["last_name"]]
    employee, event = data.employees[0], events[0]
    assert (event.environment_id, event.debtor_id, event.company_id) == (
        employee.environment_id, employee.debtor_id, employee.company_id)
    assert event.data == {"environment_id": str(employee.environment_id),
                          "debtor_id": str(employee.debtor_id),
                          "company_id": str(employee.company_id),
                          "employee_id": str(employee.id), "changed_fields": ["last_name"]}
    assert event.request_id == direct.headers["x-request-id"]
    assert event.relayed_at is None and event.connection_id is None


async def test_a_revoked_connection_is_refused_on_every_direct_route_at_once(
    sync: Sync, tokens: Tokens, data: Data, committing_sessions: sessionmaker[Session],
) -> None:
    """No stale acceptance on the fast paths: the status is read in the database on the
    next call, before any cache hears of it."""
    auth = tokens.connection(data.connection, data.app)
    calls = [("GET", f"/v1/companies/{data.companies[0].id}/employees", {}),
             ("GET", "/v1/changes", {}),
             ("PATCH", f"/v1/employees/{data.employees[0].id}",
              {"json": {"first_name": "Eva"}})]
    for method, path, options in calls:
        answer = await sync.client.request(method, path, headers=auth, **options)
        assert answer.status_code == 200, path
    with committing_sessions() as session, session.begin():
        session.get(Connection, data.connection.id).status = ConnectionStatus.REVOKED
    for method, path, options in calls:
        answer = await sync.client.request(method, path, headers=auth, **options)
        assert answer.status_code == 401, path
    with committing_sessions() as session:
        assert session.get(Employee, data.employees[0].id).first_name == "Eva"


async def test_the_change_feed_answers_as_fastapis_way_does(
    sync: Sync, tokens: Tokens, data: Data, committing_sessions: sessionmaker[Session],
) -> None:
    auth = tokens.connection(data.connection, data.app)
    app_token = tokens.app(data.app)  # no data scope: the rule refuses it
    for name in ("Bram", "Cor", "Dirk"):
        answer = await sync.client.patch(f"/v1/employees/{data.employees[0].id}",
                                         json={"first_name": name}, headers=auth)
        assert answer.status_code == 200
    with committing_sessions() as session, session.begin():  # settled: older than 5 s
        for event in session.exec(select(Event)).all():
            event.created_at = event.created_at.replace(year=2020)
    first, standard = await sync.both("GET", "/v1/changes", params={"limit": 2},
                                      headers=auth)
    _same(first, standard)
    assert first.json()["has_more"] is True and len(first.json()["data"]) == 2
    rest, standard = await sync.both(
        "GET", "/v1/changes", params={"cursor": first.json()["next_cursor"]}, headers=auth)
    _same(rest, standard)
    assert [c["data"]["changed_fields"] for c in rest.json()["data"]] == [["first_name"]]
    refused, standard = await sync.both("GET", "/v1/changes", headers=app_token)
    assert refused.status_code == standard.status_code == 403
    assert refused.json() == standard.json()
    assert (await sync.client.get("/v1/changes", params={"limit": 501},
                                  headers=auth)).status_code == 422


def test_the_fast_paths_answer_by_the_rule_their_routes_declare(sync_app: FastAPI) -> None:
    """The one-statement read and the fast write check a rule of their own choosing:
    it must be the operation their route declares to the policy (and to the role
    matrix), or a route moved to another operation would keep the old rule's check."""
    declared = {(method, path): route_operation(route)
                for method, path, route in api_routes(sync_app)}
    assert declared[("get", "/v1/employees/{employee_id}")] == employee_read.RULE.operation
    assert declared[("patch", "/v1/employees/{employee_id}")] == employee_write.RULE.operation
    assert declared[("get", "/v1/companies/{company_id}/employees")] == (
        employee_list.RULE.operation)



def test_a_fast_path_refuses_a_rule_it_cannot_check_whole() -> None:
    """A fast path checks one scope of a connection: a rule without connections, or with
    another number of scopes, stops the module from loading instead of being checked
    in part."""
    rule = employee_read.RULE
    for changed in (replace(rule, callers=rule.callers - {CallerKind.CONNECTION}),
                    replace(rule, scopes=()),
                    replace(rule, scopes=(*rule.scopes, "employees.write"))):
        with pytest.raises(ValueError, match=rule.operation):
            employee_read.connection_scope(changed)


@pytest.fixture
def sync_app(settings: Settings) -> FastAPI:
    return create_app(settings)


async def test_an_expired_or_narrowed_connection_is_refused_on_every_direct_route_at_once(
    sync: Sync, tokens: Tokens, data: Data, committing_sessions: sessionmaker[Session],
) -> None:
    """Past its `expires_at` (before the worker's job marks it), with its write scope
    taken away, or without its company: each direct route refuses on the next call."""
    auth = tokens.connection(data.connection, data.app)
    employee = f"/v1/employees/{data.employees[0].id}"
    employees = f"/v1/companies/{data.companies[0].id}/employees"

    async def answers() -> tuple[int, int, int]:
        listed = await sync.client.get(employees, headers=auth)
        fed = await sync.client.get("/v1/changes", headers=auth)
        written = await sync.client.patch(employee, json={"first_name": "Els"}, headers=auth)
        return listed.status_code, fed.status_code, written.status_code

    assert await answers() == (200, 200, 200)
    with committing_sessions() as session, session.begin():
        session.get(Connection, data.connection.id).scopes = ["employee.info.read"]
    assert await answers() == (200, 200, 403)  # narrowed to reading
    with committing_sessions() as session, session.begin():
        session.get(Connection, data.connection.id).scopes = ["employee.info"]
        session.exec(delete(ConnectionCompany).where(
            ConnectionCompany.connection_id == data.connection.id))
    assert await answers() == (404, 200, 404)  # its company dropped
    with committing_sessions() as session, session.begin():
        session.get(Connection, data.connection.id).expires_at = utcnow() - timedelta(seconds=1)
    assert await answers() == (401, 401, 401)  # past its expiry, still `active`
