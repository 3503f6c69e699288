"""The data API (SPEC 5.9, SECURITY 20, 21, 33): every call limited to the token's
debtor, companies and scopes; writes emit their event in the same transaction."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from shared.models import Connection, Employee, Event
from shared.outbox import connection_event, emit
from tests.fixtures import factories as f
from tests.services.sync.conftest import Tokens
from tests.services.sync.worlds import Data

EMPLOYEE_FIELDS = {"id", "company_id", "number", "first_name", "last_name", "birth_date", "email"}


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["data"]]


async def test_a_connection_reaches_its_debtor_and_companies_only(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
) -> None:
    auth = tokens.connection(data.connection, data.app)
    c1, c2, c3, c4 = (str(c.id) for c in data.companies)
    e1, e2, e3, e4 = (str(e.id) for e in data.employees)
    assert ids(await sync_client.get("/v1/debtors", headers=auth)) == [str(data.debtors[0].id)]
    assert ids(await sync_client.get("/v1/companies", headers=auth)) == [c1]
    employees = await sync_client.get(f"/v1/companies/{c1}/employees", headers=auth)
    assert ids(employees) == [e1]
    assert set(employees.json()["data"][0]) == EMPLOYEE_FIELDS
    for path in (f"/v1/companies/{c2}/employees", f"/v1/companies/{c3}/employees",
                 f"/v1/companies/{c4}/employees", f"/v1/employees/{e2}", f"/v1/employees/{e3}",
                 f"/v1/employees/{e4}", f"/v1/companies/{c4}"):
        response = await sync_client.get(path, headers=auth)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
    for path in (f"/v1/employees/{e2}", f"/v1/employees/{e4}"):
        response = await sync_client.patch(path, json={"last_name": "X"}, headers=auth)
        assert response.status_code == 404
    # Tenant hints in the request change nothing.
    hinted = await sync_client.get("/v1/companies", params={"debtor_id": str(data.debtors[1].id)},
                                   headers={**auth, "X-Tenant-ID": str(data.debtors[1].id)})
    assert ids(hinted) == []


async def test_scopes_are_enforced_with_403_naming_the_scope(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
) -> None:
    with_info = tokens.connection(data.connection, data.app,
                                  "company.info.read employee.info.read")
    e1, c1 = str(data.employees[0].id), str(data.companies[0].id)
    response = await sync_client.patch(f"/v1/employees/{e1}", json={"last_name": "X"},
                                       headers=with_info)
    assert response.status_code == 403
    assert response.json()["required_scope"] == "employee.info"
    company_only = tokens.connection(data.connection, data.app, "company.info.read")
    response = await sync_client.get(f"/v1/companies/{c1}/employees", headers=company_only)
    assert response.status_code == 403
    assert response.json()["required_scope"] == "employee.info.read"
    assert "insufficient_scope" in response.headers["www-authenticate"]
    app_token = await sync_client.get("/v1/companies", headers=tokens.app(data.app))
    assert app_token.status_code == 403
    assert (await sync_client.get("/v1/companies")).status_code == 401


async def test_employee_etag_and_patch_writes_an_event_atomically(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    auth = tokens.connection(data.connection, data.app)
    path = f"/v1/employees/{data.employees[0].id}"
    first = await sync_client.get(path, headers=auth)
    etag = first.headers["etag"]
    assert first.status_code == 200 and set(first.json()) == EMPLOYEE_FIELDS
    assert first.headers["ratelimit"].startswith('"connection";r=')
    cached = await sync_client.get(path, headers={**auth, "If-None-Match": etag})
    assert cached.status_code == 304 and cached.headers["etag"] == etag
    # A 304 counts against the budget and says so, like any other answer.
    assert cached.headers["ratelimit"].startswith('"connection";r=')
    assert cached.headers["ratelimit-policy"].startswith('"app-environment";q=')
    assert cached.content == b""

    for bad in ({"salary": 1}, {"email": "not-an-email"}, {"first_name": None},
                {"birth_date": "1990-02-31"}, {"last_name": ""}, {"last_name": "x" * 101}):
        response = await sync_client.patch(path, json=bad, headers=auth)
        assert response.status_code == 422, bad
        assert response.headers["content-type"] == "application/problem+json"
    stale = await sync_client.patch(path, json={"last_name": "Stale"},
                                    headers={**auth, "If-Match": '"nope"'})
    assert stale.status_code == 412
    with committing_sessions() as session:
        assert session.exec(select(Event)).all() == []
        assert session.get(Employee, data.employees[0].id).last_name != "Stale"

    changed = await sync_client.patch(
        path, json={"last_name": "de Vries", "birth_date": "1990-02-28"},
        headers={**auth, "If-Match": etag})
    assert changed.status_code == 200, changed.text
    assert changed.json()["last_name"] == "de Vries"
    assert changed.headers["etag"] != etag
    assert (await sync_client.get(path, headers={**auth, "If-None-Match": etag})).status_code == 200
    with committing_sessions() as session:
        [event] = session.exec(select(Event)).all()
    assert event.type == "employee.updated"
    assert event.data["changed_fields"] == ["birth_date", "last_name"]
    assert event.data["employee_id"] == str(data.employees[0].id)
    assert event.company_id == data.companies[0].id
    same = await sync_client.patch(path, json={"last_name": "de Vries"}, headers=auth)
    assert same.status_code == 200
    with committing_sessions() as session:
        assert len(session.exec(select(Event)).all()) == 1  # nothing changed: no event


async def test_change_feed_shows_what_the_connection_may_see_and_resumes(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.sync.events import feed

    monkeypatch.setattr(feed, "SETTLE_S", 0.0)
    with committing_sessions() as session, session.begin():
        c1, c2, _, c4 = data.companies
        changed = {"employee_id": data.employees[0].id, "changed_fields": ["last_name"]}
        seen = [emit(session, "employee.updated", c1.environment_id, debtor_id=c1.debtor_id,
                     company_id=c1.id, **changed).id]
        emit(session, "employee.updated", c2.environment_id, debtor_id=c2.debtor_id,
             company_id=c2.id, **changed)  # company not covered
        emit(session, "employee.payment.changed", c1.environment_id, debtor_id=c1.debtor_id,
             company_id=c1.id, **changed, wage_component_id=uuid.uuid4(),
             action="added")  # scope not granted
        emit(session, "employee.updated", c4.environment_id, debtor_id=c4.debtor_id,
             company_id=c4.id, **changed)  # another environment
        connection = session.get(Connection, data.connection.id)
        seen.append(emit(session, **connection_event("connection.created", connection,
                                                     changed_fields=["scopes"])).id)
        seen.append(emit(session, "company.updated", c1.environment_id, debtor_id=c1.debtor_id,
                         company_id=c1.id, changed_fields=["name"]).id)
        other = session.get(Connection, data.readonly.id)
        emit(session, **connection_event("connection.created", other,
                                         changed_fields=["scopes"]))  # another app's
    auth = tokens.connection(data.connection, data.app)
    everything = await sync_client.get("/v1/changes", headers=auth)
    # Ordered by event id (time-ordered; events of one millisecond in id order).
    assert ids(everything) == sorted(str(i) for i in seen)
    assert everything.json()["has_more"] is False
    got, cursor = [], None
    for _ in range(10):
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        response = await sync_client.get("/v1/changes", params=params, headers=auth)
        got += ids(response)
        cursor = response.json()["next_cursor"]
        if not response.json()["has_more"]:
            break
    assert got == ids(everything)
    tail = await sync_client.get("/v1/changes", params={"cursor": cursor}, headers=auth)
    assert ids(tail) == [] and tail.json()["next_cursor"] == cursor
    for bad in ({"cursor": "-1"}, {"cursor": "x" * 600}, {"limit": 100000}, {"limit": -1}):
        response = await sync_client.get("/v1/changes", params=bad, headers=auth)
        assert 400 <= response.status_code < 500, bad
        assert response.headers["content-type"] == "application/problem+json"


async def test_first_party_users_reach_what_the_user_reaches(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
) -> None:
    scopes = "company.info.read employee.info.read"
    accountant = tokens.user(data.users["accountant"], data.first_party, scopes)
    assert sorted(ids(await sync_client.get("/v1/debtors", headers=accountant))) == sorted(
        str(d.id) for d in data.debtors[:2])
    assert len(ids(await sync_client.get("/v1/companies", headers=accountant))) == 3
    company_user = tokens.user(data.users["company"], data.first_party, scopes)
    assert sorted(ids(await sync_client.get("/v1/companies", headers=company_user))) == sorted(
        str(c.id) for c in data.companies[:2])
    employee = tokens.user(data.users["employee"], data.first_party, scopes)
    own, other = data.employees[0].id, data.employees[1].id
    assert (await sync_client.get(f"/v1/employees/{own}", headers=employee)).status_code == 200
    assert (await sync_client.get(f"/v1/employees/{other}", headers=employee)).status_code == 404
    listed = await sync_client.get(f"/v1/companies/{data.companies[0].id}/employees",
                                   headers=employee)
    assert ids(listed) == [str(own)]


async def test_cursor_pagination_with_link_header(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    with committing_sessions() as session, session.begin():
        extra = [f.make_employee(session, data.companies[0]).id for _ in range(4)]
    auth = tokens.connection(data.connection, data.app)
    url = f"/v1/companies/{data.companies[0].id}/employees"
    seen, cursor = [], None
    for _ in range(10):
        response = await sync_client.get(url, params={"limit": 2, **(
            {"cursor": cursor} if cursor else {})}, headers=auth)
        seen += ids(response)
        cursor = response.json()["next_cursor"]
        if cursor is None:
            assert "link" not in response.headers
            break
        assert 'rel="next"' in response.headers["link"]
    assert sorted(seen) == sorted(str(i) for i in [data.employees[0].id, *extra])
    assert len(seen) == len(set(seen)) == 5


async def test_a_revoked_connection_is_refused_on_the_next_call(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data, redis_client,
    committing_sessions: sessionmaker[Session],
) -> None:
    from shared.models import ConnectionStatus
    from shared.status import Subject, publish

    auth = tokens.connection(data.connection, data.app)
    assert (await sync_client.get("/v1/companies", headers=auth)).status_code == 200
    with committing_sessions() as session, session.begin():
        session.get(Connection, data.connection.id).status = ConnectionStatus.REVOKED
    publish(redis_client, [(Subject.CONNECTION, data.connection.id, False)])
    response = await sync_client.get("/v1/companies", headers=auth)
    assert response.status_code == 401
    assert (await sync_client.get("/v1/changes", headers=auth)).status_code == 401


async def test_hostile_bodies_get_a_4xx_problem_and_write_nothing(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    from services.sync.app import MAX_BODY_BYTES

    auth = {**tokens.connection(data.connection, data.app), "content-type": "application/json"}
    path = f"/v1/employees/{data.employees[0].id}"
    huge = b'{"last_name": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'

    async def chunks():
        for start in range(0, len(huge), 65536):
            yield huge[start:start + 65536]

    for body in (b"\xff\xfe{", b"[" * 50000 + b"]" * 50000, b"null", huge, chunks()):
        response = await sync_client.patch(path, content=body, headers=auth)
        assert 400 <= response.status_code < 500, response.status_code
        assert response.headers["content-type"] == "application/problem+json"
    assert response.status_code == 413
    with committing_sessions() as session:
        assert session.exec(select(Event)).all() == []


async def test_change_feed_withholds_events_until_they_settle(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from services.sync.events import feed

    monkeypatch.setattr(feed, "SETTLE_S", 3.0)
    auth = tokens.connection(data.connection, data.app)
    assert ids(await sync_client.get("/v1/changes", headers=auth)) == []
    with committing_sessions() as session, session.begin():
        c1 = data.companies[0]
        event_id = emit(session, "employee.updated", c1.environment_id, debtor_id=c1.debtor_id,
                        company_id=c1.id, employee_id=data.employees[0].id,
                        changed_fields=["last_name"]).id
    assert ids(await sync_client.get("/v1/changes", headers=auth)) == []
    await asyncio.sleep(3.1)
    assert ids(await sync_client.get("/v1/changes", headers=auth)) == [str(event_id)]
