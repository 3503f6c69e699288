"""Writes of the read-write scopes (SPEC 4, 5.8): create an employee, add and end a wage
component, end an employment. Each is limited to the token's connection, refuses bad
input with nothing written, and writes its thin event in the same transaction."""

from __future__ import annotations

import json
from datetime import date

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, func, select

from shared.config import Settings
from shared.models import App, Connection, Employee, Employment, Event, WageComponent
from shared.runtime import Runtime
from tests.fixtures import factories as f
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running
from tests.services.sync.test_webhook_delivery import deliveries, settled, subscribe
from tests.services.sync.worlds import Data, World


def events(sessions: sessionmaker[Session]) -> list[Event]:
    with sessions() as session:
        return list(session.exec(select(Event).order_by(Event.id)).all())


def count(sessions: sessionmaker[Session], model) -> int:
    with sessions() as session:
        return session.exec(select(func.count()).select_from(model)).one()


def grant(sessions: sessionmaker[Session], connection: Connection, *scopes: str) -> None:
    with sessions() as session, session.begin():
        row = session.get(Connection, connection.id)
        row.scopes = [*row.scopes, *scopes]


def add_employment(sessions: sessionmaker[Session], employee: Employee) -> Employment:
    with sessions() as session, session.begin():
        row = Employment(environment_id=employee.environment_id, debtor_id=employee.debtor_id,
                         company_id=employee.company_id, employee_id=employee.id,
                         start_date=date(2020, 1, 1), hours_per_week=40.0)
        session.add(row)
        session.flush()
        session.expunge(row)
        return row


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


async def test_create_employee_within_the_connection_only(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    auth = tokens.connection(data.connection, data.app)
    c1 = data.companies[0].id
    before = count(committing_sessions, Employee)
    body = {"number": "E-900", "first_name": "Bea", "last_name": "de Wit",
            "email": "bea@example.test"}

    # Other companies of the same debtor, other debtors, other environments: 404.
    for other in data.companies[1:]:
        problem(await sync_client.post(f"/v1/companies/{other.id}/employees", json=body,
                                       headers=auth), 404)
    # A token without employee.info, or a connection without it: 403 naming the scope.
    read_only = tokens.connection(data.connection, data.app, "employee.info.read")
    denied = problem(await sync_client.post(f"/v1/companies/{c1}/employees", json=body,
                                            headers=read_only), 403)
    assert denied["required_scope"] == "employee.info"
    with committing_sessions() as session:
        readonly_app = session.get(App, data.readonly.app_id)
    not_granted = tokens.connection(data.readonly, readonly_app, "employee.info")
    denied = problem(await sync_client.post(f"/v1/companies/{c1}/employees", json=body,
                                            headers=not_granted), 403)
    assert denied["required_scope"] == "employee.info"
    # Bad input: 422 problem+json.
    for bad in ({**body, "last_name": ""}, {**body, "salary": 1}, {**body, "email": "nope"},
                {"first_name": "Bea", "last_name": "de Wit"}, {**body, "birth_date": "31-12"}):
        problem(await sync_client.post(f"/v1/companies/{c1}/employees", json=bad,
                                       headers=auth), 422)
    assert count(committing_sessions, Employee) == before
    assert events(committing_sessions) == []

    created = await sync_client.post(f"/v1/companies/{c1}/employees", json=body, headers=auth)
    assert created.status_code == 201, created.text
    employee = created.json()
    assert created.headers["location"] == f"/v1/employees/{employee['id']}"
    assert employee["company_id"] == str(c1) and employee["birth_date"] is None
    fetched = await sync_client.get(created.headers["location"], headers=auth)
    assert fetched.json()["email"] == "bea@example.test"
    [event] = events(committing_sessions)
    assert event.type == "employee.created" and event.company_id == c1
    assert event.data["employee_id"] == employee["id"]
    assert event.data["changed_fields"] == ["email", "first_name", "last_name", "number"]
    assert "Bea" not in json.dumps(event.data)  # thin: names of fields, never values

    # The number is unique within the company: 409, nothing more written.
    problem(await sync_client.post(f"/v1/companies/{c1}/employees", json=body,
                                   headers=auth), 409)
    assert count(committing_sessions, Employee) == before + 1
    assert len(events(committing_sessions)) == 1


async def test_an_employee_login_cannot_create_employees(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
) -> None:
    auth = tokens.user(data.users["employee"], data.first_party, "employee.info")
    response = await sync_client.post(
        f"/v1/companies/{data.companies[0].id}/employees",
        json={"number": "E-1", "first_name": "A", "last_name": "B"}, headers=auth)
    problem(response, 403)


async def test_add_and_end_a_wage_component(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    auth = tokens.connection(data.connection, data.app, "employee.payment")
    e1, e2 = data.employees[0].id, data.employees[1].id
    body = {"code": "SAL", "description": "Salaris", "amount_cents": 350000,
            "valid_from": "2026-01-01"}
    # The token's scope alone is not enough: the connection must hold it.
    denied = problem(await sync_client.post(f"/v1/employees/{e1}/wage-components",
                                            json=body, headers=auth), 403)
    assert denied["required_scope"] == "employee.payment"
    grant(committing_sessions, data.connection, "employee.payment")

    problem(await sync_client.post(f"/v1/employees/{e2}/wage-components", json=body,
                                   headers=auth), 404)
    read_only = tokens.connection(data.connection, data.app, "employee.payment.read")
    denied = problem(await sync_client.post(f"/v1/employees/{e1}/wage-components",
                                            json=body, headers=read_only), 403)
    assert denied["required_scope"] == "employee.payment"
    for bad in ({**body, "amount_cents": "lots"}, {**body, "currency": "euro"},
                {**body, "valid_to": "2025-12-31"}, {**body, "iban": "x"}):
        problem(await sync_client.post(f"/v1/employees/{e1}/wage-components", json=bad,
                                       headers=auth), 422)
    assert count(committing_sessions, WageComponent) == 0
    assert events(committing_sessions) == []

    added = await sync_client.post(f"/v1/employees/{e1}/wage-components", json=body,
                                   headers=auth)
    assert added.status_code == 201, added.text
    component = added.json()
    assert component["currency"] == "EUR" and component["valid_to"] is None
    [event] = events(committing_sessions)
    assert event.type == "employee.payment.changed"
    assert event.data["wage_component_id"] == component["id"]
    assert event.data["changed_fields"] == [
        "amount_cents", "code", "currency", "description", "valid_from"]
    assert "350000" not in json.dumps(event.data)

    end = f"/v1/employees/{e1}/wage-components/{component['id']}/end"
    problem(await sync_client.post(end, json={"valid_to": "2025-06-30"}, headers=auth), 422)
    problem(await sync_client.post(f"/v1/employees/{e2}/wage-components/{component['id']}/end",
                                   json={"valid_to": "2026-06-30"}, headers=auth), 404)
    ended = await sync_client.post(end, json={"valid_to": "2026-06-30"}, headers=auth)
    assert ended.status_code == 200 and ended.json()["valid_to"] == "2026-06-30"
    again = await sync_client.post(end, json={"valid_to": "2026-06-30"}, headers=auth)
    assert again.status_code == 200
    problem(await sync_client.post(end, json={"valid_to": "2026-12-31"}, headers=auth), 409)
    earlier = await sync_client.post(end, json={"valid_to": "2026-03-31"}, headers=auth)
    assert earlier.json()["valid_to"] == "2026-03-31"
    changes = [e.data for e in events(committing_sessions)[1:]]
    assert [c["changed_fields"] for c in changes] == [["valid_to"], ["valid_to"]]
    assert all(c["action"] == "ended" for c in changes)


async def test_end_an_employment(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    grant(committing_sessions, data.connection, "employee.employment")
    auth = tokens.connection(data.connection, data.app, "employee.employment")
    mine = add_employment(committing_sessions, data.employees[0])
    foreign = add_employment(committing_sessions, data.employees[1])
    e1, e2 = data.employees[0].id, data.employees[1].id
    path = f"/v1/employees/{e1}/employments/{mine.id}/end"

    denied = problem(await sync_client.post(
        path, json={"end_date": "2026-12-31"},
        headers=tokens.connection(data.connection, data.app, "employee.employment.read")), 403)
    assert denied["required_scope"] == "employee.employment"
    for wrong in (f"/v1/employees/{e2}/employments/{foreign.id}/end",
                  f"/v1/employees/{e1}/employments/{foreign.id}/end"):
        problem(await sync_client.post(wrong, json={"end_date": "2026-12-31"}, headers=auth),
                404)
    for bad in ({"end_date": "2019-12-31"}, {"end_date": "soon"}, {},
                {"end_date": "2026-12-31", "reason": "x"}):
        problem(await sync_client.post(path, json=bad, headers=auth), 422)
    assert events(committing_sessions) == []

    ended = await sync_client.post(path, json={"end_date": "2026-12-31"}, headers=auth)
    assert ended.status_code == 200 and ended.json()["end_date"] == "2026-12-31"
    [event] = events(committing_sessions)
    assert event.type == "employee.employment.changed"
    assert event.data == {**event.data, "employment_id": str(mine.id), "action": "ended",
                          "changed_fields": ["end_date"], "employee_id": str(e1)}


@pytest.mark.usefixtures("fast_retries")
async def test_write_events_reach_only_apps_holding_their_scope(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
) -> None:
    types = ["employee.created", "employee.payment.changed", "employee.employment.changed"]
    for name in ("info", "pay", "both"):
        await subscribe(sync_client, tokens, world.apps[name], receiver.url(f"/ok/{name}"),
                        types)
    with committing_sessions() as session, session.begin():
        employee = f.make_employee(session, world.companies[0])
        session.expunge(employee)
    employment = add_employment(committing_sessions, employee)
    grant(committing_sessions, world.connections["info"], "employee.employment")
    c1 = world.companies[0].id
    # Signing tokens uses a sync session: sign them before the in-process worker runs.
    auth = {name: tokens.connection(world.connections[name], world.apps[name])
            for name in ("both", "pay")}
    auth["info"] = tokens.connection(world.connections["info"], world.apps["info"],
                                     "employee.info.read employee.employment")
    async with worker_running(settings):
        created = await sync_client.post(
            f"/v1/companies/{c1}/employees",
            json={"number": "N-1", "first_name": "Bea", "last_name": "de Wit"},
            headers=auth["both"])
        assert created.status_code == 201, created.text
        added = await sync_client.post(
            f"/v1/employees/{employee.id}/wage-components",
            json={"code": "SAL", "description": "Salaris", "amount_cents": 1,
                  "valid_from": "2026-01-01"},
            headers=auth["pay"])
        assert added.status_code == 201, added.text
        ended = await sync_client.post(
            f"/v1/employees/{employee.id}/employments/{employment.id}/end",
            json={"end_date": "2026-12-31"},
            headers=auth["info"])
        assert ended.status_code == 200, ended.text
        await wait_for(settled(runtime, 5))
    got = {name: sorted(json.loads(r.body)["type"] for r in receiver.to(f"/ok/{name}"))
           for name in ("info", "pay", "both")}
    # "pay" lacks employee.info.read and never sees employee.created; "info" lacks the
    # payment scopes; only "info" now holds an employment scope.
    assert got == {
        "info": ["employee.created", "employee.employment.changed"],
        "pay": ["employee.payment.changed"],
        "both": ["employee.created", "employee.payment.changed"],
    }
    assert len(await deliveries(runtime)) == 5
