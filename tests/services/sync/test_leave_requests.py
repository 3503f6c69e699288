"""Leave requests (SPEC 4: `employee.leave` covers balances and requests): reads with
cursors and ETags, filing and deciding requests, the connection's reach, bad input with
nothing written, and `employee.leave.changed` through the outbox to subscribed apps."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from services.sync.events import feed
from shared.config import Settings
from shared.models import Employee, LeaveBalance, LeaveRequest, LeaveRequestStatus
from shared.runtime import Runtime
from tests.fixtures import factories as f
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running
from tests.services.sync.test_data_api import ids
from tests.services.sync.test_webhook_delivery import deliveries, settled, subscribe
from tests.services.sync.test_writes import count, events, grant, problem
from tests.services.sync.worlds import Data, World

BODY = {"leave_type": "statutory", "start_date": "2026-08-03", "end_date": "2026-08-07",
        "hours": 40.0, "note": "Summer holiday"}


def add_requests(sessions: sessionmaker[Session], employee: Employee, count: int = 1,
                 status: LeaveRequestStatus = LeaveRequestStatus.REQUESTED) -> list[str]:
    """`count` one-day requests of the employee in consecutive weeks of 2026."""
    with sessions() as session, session.begin():
        rows = [LeaveRequest(environment_id=employee.environment_id,
                             debtor_id=employee.debtor_id, company_id=employee.company_id,
                             employee_id=employee.id, leave_type="extra", hours=8.0,
                             start_date=date(2026, 3, 2) + timedelta(weeks=i),
                             end_date=date(2026, 3, 2) + timedelta(weeks=i), status=status)
                for i in range(count)]
        session.add_all(rows)
        session.flush()
        return [str(r.id) for r in rows]


async def test_reads_need_the_scope_and_the_employees_reach(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    grant(committing_sessions, data.connection, "employee.leave.read")
    auth = tokens.connection(data.connection, data.app, "employee.leave.read")
    mine = add_requests(committing_sessions, data.employees[0], 3)
    approved = add_requests(committing_sessions, data.employees[0], 1,
                            LeaveRequestStatus.APPROVED)
    foreign = {e.id: add_requests(committing_sessions, e)[0] for e in data.employees[1:]}
    e1 = data.employees[0].id
    base = f"/v1/employees/{e1}/leave-requests"

    first = await sync_client.get(base, params={"limit": 2}, headers=auth)
    assert ids(first) == mine[:2] and 'rel="next"' in first.headers["link"]
    assert "ratelimit" in first.headers
    rest = await sync_client.get(base, params={"limit": 2, "cursor": first.json()["next_cursor"]},
                                 headers=auth)
    assert ids(rest) == [mine[2], *approved] and rest.json()["next_cursor"] is None
    row = first.json()["data"][0]
    assert row == {**row, "leave_type": "extra", "hours": 8.0, "status": "requested",
                   "start_date": "2026-03-02", "end_date": "2026-03-02", "note": None}
    only = await sync_client.get(base, params={"status": "approved"}, headers=auth)
    assert ids(only) == approved
    # A cursor of one status filter is no cursor of another.
    problem(await sync_client.get(base, params={"status": "approved",
                                                "cursor": first.json()["next_cursor"]},
                                  headers=auth), 400)
    problem(await sync_client.get(base, params={"status": "maybe"}, headers=auth), 422)

    one = await sync_client.get(f"{base}/{mine[0]}", headers=auth)
    assert one.status_code == 200 and one.json() == row
    etag = one.headers["etag"]
    assert "ratelimit" in one.headers
    cached = await sync_client.get(f"{base}/{mine[0]}",
                                   headers={**auth, "If-None-Match": etag})
    assert cached.status_code == 304 and cached.headers["etag"] == etag
    other = await sync_client.get(f"{base}/{mine[1]}", headers={**auth, "If-None-Match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag

    # Another company of the debtor, another debtor, another environment: 404; so is
    # another employee's request under my employee.
    for employee_id, request_id in foreign.items():
        for path in (f"/v1/employees/{employee_id}/leave-requests",
                     f"/v1/employees/{employee_id}/leave-requests/{request_id}",
                     f"{base}/{request_id}"):
            problem(await sync_client.get(path, headers=auth), 404)
    # The scope is needed in the token and in the connection.
    denied = problem(await sync_client.get(base, headers=tokens.connection(
        data.connection, data.app, "employee.info.read")), 403)
    assert denied["required_scope"] == "employee.leave.read"
    with committing_sessions() as session:
        readonly_app = session.get(type(data.app), data.readonly.app_id)
    not_granted = tokens.connection(data.readonly, readonly_app, "employee.leave.read")
    denied = problem(await sync_client.get(f"{base}/{mine[0]}", headers=not_granted), 403)
    assert denied["required_scope"] == "employee.leave.read"


async def test_file_a_request_with_validation_and_a_thin_event(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    grant(committing_sessions, data.connection, "employee.leave")
    auth = tokens.connection(data.connection, data.app, "employee.leave")
    e1 = data.employees[0].id
    base = f"/v1/employees/{e1}/leave-requests"

    read_only = tokens.connection(data.connection, data.app, "employee.leave.read")
    denied = problem(await sync_client.post(base, json=BODY, headers=read_only), 403)
    assert denied["required_scope"] == "employee.leave"
    for other in data.employees[1:]:
        problem(await sync_client.post(f"/v1/employees/{other.id}/leave-requests", json=BODY,
                                       headers=auth), 404)
    bad_bodies = [
        {**BODY, "end_date": "2026-08-02"},  # before the start
        {**BODY, "hours": 0}, {**BODY, "hours": -8}, {**BODY, "hours": "NaN"},
        {**BODY, "hours": 121},  # more than 24 per day of five days
        {**BODY, "hours": 10**9},
        {**BODY, "leave_type": "sabbatical"}, {**BODY, "leave_type": ""},
        {**BODY, "start_date": "1999-12-31"}, {**BODY, "end_date": "2101-01-01"},
        {**BODY, "start_date": "2026-01-01", "end_date": "2027-06-30"},  # over a year
        {**BODY, "start_date": "08-03-2026"}, {**BODY, "note": ""}, {**BODY, "note": "x" * 501},
        {**BODY, "status": "approved"},  # not settable on create
        {**BODY, "employee_id": str(data.employees[1].id)},
        {key: value for key, value in BODY.items() if key != "hours"},
    ]
    for bad in bad_bodies:
        body = problem(await sync_client.post(base, json=bad, headers=auth), 422)
        assert body["type"].startswith("urn:koppel:problem:"), bad
    problem(await sync_client.post(base, content=b"{not json", headers={
        **auth, "Content-Type": "application/json"}), 422)
    assert count(committing_sessions, LeaveRequest) == 0
    assert events(committing_sessions) == []

    created = await sync_client.post(base, json=BODY, headers=auth)
    assert created.status_code == 201, created.text
    row = created.json()
    assert row == {**row, **BODY, "status": "requested", "employee_id": str(e1)}
    assert created.headers["location"] == f"{base}/{row['id']}"
    fetched = await sync_client.get(created.headers["location"], headers=auth)
    assert fetched.json() == row
    [event] = events(committing_sessions)
    assert event.type == "employee.leave.changed" and event.company_id == data.companies[0].id
    assert event.data == {**event.data, "employee_id": str(e1), "leave_request_id": row["id"],
                          "action": "created", "changed_fields": [
                              "end_date", "hours", "leave_type", "note", "start_date",
                              "status"]}
    assert "Summer" not in json.dumps(event.data) and "2026" not in json.dumps(event.data)

    # A request sharing a day with requested or approved leave: 409, nothing written.
    clash = problem(await sync_client.post(base, json={
        **BODY, "start_date": "2026-08-07", "end_date": "2026-08-10", "hours": 16},
        headers=auth), 409)
    assert clash["leave_request_id"] == row["id"]
    assert count(committing_sessions, LeaveRequest) == 1
    assert len(events(committing_sessions)) == 1
    # One day, half a day's hours, no note: fine.
    single_day = await sync_client.post(base, json={
        "leave_type": "special", "start_date": "2026-08-10", "end_date": "2026-08-10",
        "hours": 4.5}, headers=auth)
    assert single_day.status_code == 201, single_day.text
    assert single_day.json()["note"] is None


async def test_status_changes_follow_the_allowed_transitions(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    grant(committing_sessions, data.connection, "employee.leave")
    auth = tokens.connection(data.connection, data.app, "employee.leave")
    e1, e2 = data.employees[0].id, data.employees[1].id
    first, second = add_requests(committing_sessions, data.employees[0], 2)
    [foreign] = add_requests(committing_sessions, data.employees[1])
    path = f"/v1/employees/{e1}/leave-requests/{first}"
    etag = (await sync_client.get(path, headers=auth)).headers["etag"]

    denied = problem(await sync_client.patch(path, json={"status": "approved"}, headers=(
        tokens.connection(data.connection, data.app, "employee.leave.read"))), 403)
    assert denied["required_scope"] == "employee.leave"
    for wrong in (f"/v1/employees/{e2}/leave-requests/{foreign}",
                  f"/v1/employees/{e1}/leave-requests/{foreign}",
                  f"/v1/employees/{e2}/leave-requests/{first}"):
        problem(await sync_client.patch(wrong, json={"status": "approved"}, headers=auth), 404)
    for bad in ({"status": "maybe"}, {}, {"status": None}, {"status": "approved", "hours": 1},
                {"status": "approved", "note": "ok"}):
        problem(await sync_client.patch(path, json=bad, headers=auth), 422)
    assert events(committing_sessions) == []

    approved = await sync_client.patch(path, json={"status": "approved"}, headers=auth)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert approved.headers["etag"] != etag
    again = await sync_client.patch(path, json={"status": "approved"}, headers=auth)
    assert again.status_code == 200  # the same status again: nothing changes, no event
    for target in ("rejected", "requested"):
        conflict = problem(await sync_client.patch(path, json={"status": target},
                                                   headers=auth), 409)
        assert conflict["current_status"] == "approved"
    cancelled = await sync_client.patch(path, json={"status": "cancelled"}, headers=auth)
    assert cancelled.json()["status"] == "cancelled"
    problem(await sync_client.patch(path, json={"status": "approved"}, headers=auth), 409)

    other = f"/v1/employees/{e1}/leave-requests/{second}"
    rejected = await sync_client.patch(other, json={"status": "rejected"}, headers=auth)
    assert rejected.json()["status"] == "rejected"
    for target in ("approved", "cancelled"):
        problem(await sync_client.patch(other, json={"status": target}, headers=auth), 409)

    fetched = await sync_client.get(path, headers={**auth, "If-None-Match": etag})
    assert fetched.status_code == 200 and fetched.json()["status"] == "cancelled"
    changes = events(committing_sessions)
    assert [(e.data["leave_request_id"], e.data["action"], e.data["changed_fields"])
            for e in changes] == [(first, "status_changed", ["status"]),
                                  (first, "status_changed", ["status"]),
                                  (second, "status_changed", ["status"])]
    assert all(e.type == "employee.leave.changed" for e in changes)
    # The cancelled and rejected requests no longer block their days.
    refiled = await sync_client.post(f"/v1/employees/{e1}/leave-requests", json={
        **BODY, "start_date": "2026-03-02", "end_date": "2026-03-09", "hours": 16},
        headers=auth)
    assert refiled.status_code == 201, refiled.text


def add_balance(sessions: sessionmaker[Session], employee: Employee, leave_type: str,
                year: int, hours: float) -> str:
    with sessions() as session, session.begin():
        row = LeaveBalance(environment_id=employee.environment_id, debtor_id=employee.debtor_id,
                           company_id=employee.company_id, employee_id=employee.id,
                           leave_type=leave_type, year=year, balance_hours=hours)
        session.add(row)
        session.flush()
        return str(row.id)


def balance_hours(sessions: sessionmaker[Session], balance_id: str) -> float:
    with sessions() as session:
        return session.exec(select(LeaveBalance.balance_hours)
                            .where(LeaveBalance.id == uuid.UUID(balance_id))).one()


async def test_approving_takes_the_hours_from_the_balance_and_cancelling_returns_them(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    grant(committing_sessions, data.connection, "employee.leave")
    auth = tokens.connection(data.connection, data.app, "employee.leave")
    worker, other = data.employees[0], data.employees[1]
    statutory = add_balance(committing_sessions, worker, "statutory", 2026, 40)
    next_year = add_balance(committing_sessions, worker, "statutory", 2027, 40)
    extra = add_balance(committing_sessions, worker, "extra", 2026, 40)
    foreign = add_balance(committing_sessions, other, "statutory", 2026, 40)
    base = f"/v1/employees/{worker.id}/leave-requests"

    async def filed(**fields) -> str:
        created = await sync_client.post(base, json={**BODY, **fields}, headers=auth)
        assert created.status_code == 201, created.text
        return created.headers["location"]

    summer = await filed(hours=24)
    autumn = await filed(start_date="2026-10-05", end_date="2026-10-09", hours=24)
    unpaid = await filed(leave_type="unpaid", start_date="2026-11-02", end_date="2026-11-02",
                         hours=8)
    before = len(events(committing_sessions))

    approved = await sync_client.patch(summer, json={"status": "approved"}, headers=auth)
    assert approved.status_code == 200, approved.text
    assert balance_hours(committing_sessions, statutory) == 16
    [moved, decided] = events(committing_sessions)[before:]
    assert moved.data == {**moved.data, "leave_balance_id": statutory,
                          "action": "balance_changed", "changed_fields": ["balance_hours"]}
    assert decided.data["action"] == "status_changed"
    balances = await sync_client.get(f"/v1/employees/{worker.id}/leave-balances", headers=auth)
    assert {row["id"]: row["balance_hours"] for row in balances.json()["data"]}[statutory] == 16

    # 24 more hours than the 16 left: 409, nothing changes (status, balance, events).
    short = problem(await sync_client.patch(autumn, json={"status": "approved"},
                                            headers=auth), 409)
    assert short["leave_balance_id"] == statutory and short["balance_hours"] == 16
    assert (await sync_client.get(autumn, headers=auth)).json()["status"] == "requested"
    assert balance_hours(committing_sessions, statutory) == 16
    assert len(events(committing_sessions)) == before + 2

    # A type without a balance row is not counted; rejecting never touches a balance.
    assert (await sync_client.patch(unpaid, json={"status": "approved"},
                                    headers=auth)).status_code == 200
    assert (await sync_client.patch(autumn, json={"status": "rejected"},
                                    headers=auth)).status_code == 200
    assert balance_hours(committing_sessions, statutory) == 16

    # Cancelling the approved request gives its hours back, once.
    for _ in range(2):
        cancelled = await sync_client.patch(summer, json={"status": "cancelled"}, headers=auth)
        assert cancelled.status_code == 200, cancelled.text
    assert balance_hours(committing_sessions, statutory) == 40
    # Other years, types and employees were never touched.
    assert [balance_hours(committing_sessions, b) for b in (next_year, extra, foreign)] == [
        40, 40, 40]
    # Cancelling a request that was never approved gives nothing back.
    pending = await filed(start_date="2026-12-07", end_date="2026-12-07", hours=8)
    await sync_client.patch(pending, json={"status": "cancelled"}, headers=auth)
    assert balance_hours(committing_sessions, statutory) == 40


async def test_an_employee_login_files_and_cancels_but_cannot_decide(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    auth = tokens.user(data.users["employee"], data.first_party, "employee.leave")
    own, other = data.employees[0].id, data.employees[1].id
    created = await sync_client.post(f"/v1/employees/{own}/leave-requests", json=BODY,
                                     headers=auth)
    assert created.status_code == 201, created.text
    problem(await sync_client.post(f"/v1/employees/{other}/leave-requests", json=BODY,
                                   headers=auth), 404)
    path = created.headers["location"]
    for decision in ("approved", "rejected"):
        problem(await sync_client.patch(path, json={"status": decision}, headers=auth), 403)
    cancelled = await sync_client.patch(path, json={"status": "cancelled"}, headers=auth)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    # The company login above the employee decides.
    manager = tokens.user(data.users["company"], data.first_party, "employee.leave")
    again = await sync_client.post(f"/v1/employees/{own}/leave-requests", json=BODY,
                                   headers=auth)
    decided = await sync_client.patch(again.headers["location"], json={"status": "approved"},
                                      headers=manager)
    assert decided.status_code == 200 and decided.json()["status"] == "approved"
    assert len(events(committing_sessions)) == 4


@pytest.mark.usefixtures("fast_retries")
async def test_leave_events_reach_only_apps_holding_the_leave_scope(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feed, "SETTLE_S", 0.0)
    for name in ("info", "pay"):
        await subscribe(sync_client, tokens, world.apps[name], receiver.url(f"/ok/{name}"),
                        ["employee.leave.changed"])
    with committing_sessions() as session, session.begin():
        employee = f.make_employee(session, world.companies[0])
        session.expunge(employee)
    grant(committing_sessions, world.connections["info"], "employee.leave")
    # Signing tokens uses a sync session: sign them before the in-process worker runs.
    auth = tokens.connection(world.connections["info"], world.apps["info"], "employee.leave")
    pay_auth = tokens.connection(world.connections["pay"], world.apps["pay"])
    base = f"/v1/employees/{employee.id}/leave-requests"
    async with worker_running(settings):
        created = await sync_client.post(base, json=BODY, headers=auth)
        assert created.status_code == 201, created.text
        approved = await sync_client.patch(created.headers["location"],
                                           json={"status": "approved"}, headers=auth)
        assert approved.status_code == 200, approved.text
        await wait_for(settled(runtime, 2))
    # At least once: a retry repeats its delivery's webhook-id.
    got = list({r.headers["webhook-id"]: json.loads(r.body)
                for r in receiver.to("/ok/info")}.values())
    # Deliveries run concurrently: their order is not the order of the events.
    assert sorted((p["type"], p["data"]["action"]) for p in got) == [
        ("employee.leave.changed", "created"), ("employee.leave.changed", "status_changed")]
    assert {p["data"]["leave_request_id"] for p in got} == {created.json()["id"]}
    assert all(p["data"]["employee_id"] == str(employee.id) for p in got)
    # "pay" has no leave scope on its connection: it never hears of leave.
    assert receiver.to("/ok/pay") == []
    assert len(await deliveries(runtime)) == 2
    # The change feed shows the same two events to the leave connection only.
    feed_ids = ids(await sync_client.get("/v1/changes", headers=auth))
    assert sorted(feed_ids) == sorted(str(d.event_id) for d in await deliveries(runtime))
    assert ids(await sync_client.get("/v1/changes", headers=pay_auth)) == []
