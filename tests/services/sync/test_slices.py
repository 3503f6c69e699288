"""Employments and bank accounts: their own scopes, the employee's reach, write events."""

from __future__ import annotations

from datetime import date

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from shared.models import (
    Absence,
    BankAccount,
    Connection,
    Employment,
    Event,
    LeaveBalance,
    PayrollRun,
    WageComponent,
)
from tests.services.sync.conftest import Tokens
from tests.services.sync.test_data_api import ids
from tests.services.sync.worlds import Data

SCOPES = ["employee.employment.read", "employee.bankaccount", "company.info.read"]


def add_slices(session: Session, employee) -> tuple[Employment, BankAccount]:
    common = {"environment_id": employee.environment_id, "debtor_id": employee.debtor_id,
              "company_id": employee.company_id, "employee_id": employee.id}
    employment = Employment(**common, start_date=date(2020, 1, 1), hours_per_week=32.0,
                            function="Engineer", department="R&D")
    account = BankAccount(**common, iban="NL91ABNA0417164300", account_holder="A. Jansen")
    session.add_all([employment, account])
    session.flush()
    return employment, account


async def test_slices_need_their_scope_and_the_employees_reach(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    with committing_sessions() as session, session.begin():
        mine = add_slices(session, data.employees[0])
        foreign = add_slices(session, data.employees[1])  # a company the connection lacks
        connection = session.get(Connection, data.connection.id)
        connection.scopes = [*connection.scopes, *SCOPES]
    auth = tokens.connection(data.connection, data.app, " ".join(SCOPES))
    e1, e2 = data.employees[0].id, data.employees[1].id
    assert ids(await sync_client.get(f"/v1/employees/{e1}/employments", headers=auth)) == [
        str(mine[0].id)]
    accounts = await sync_client.get(f"/v1/employees/{e1}/bank-accounts", headers=auth)
    assert accounts.json()["data"][0]["iban"] == "NL91ABNA0417164300"
    for path in (f"/v1/employees/{e2}/employments", f"/v1/employees/{e2}/bank-accounts"):
        assert (await sync_client.get(path, headers=auth)).status_code == 404
    foreign_patch = await sync_client.patch(
        f"/v1/employees/{e2}/bank-accounts/{foreign[1].id}", json={"account_holder": "X"},
        headers=auth)
    assert foreign_patch.status_code == 404
    # Another employee's account id under my employee: 404 too.
    crossed = await sync_client.patch(f"/v1/employees/{e1}/bank-accounts/{foreign[1].id}",
                                      json={"account_holder": "X"}, headers=auth)
    assert crossed.status_code == 404

    # The token's scope alone is not enough: the connection must hold it.
    info_only = tokens.connection(data.connection, data.app, "employee.info.read")
    denied = await sync_client.get(f"/v1/employees/{e1}/employments", headers=info_only)
    assert denied.status_code == 403
    assert denied.json()["required_scope"] == "employee.employment.read"

    path = f"/v1/employees/{e1}/bank-accounts/{mine[1].id}"
    bad = await sync_client.patch(path, json={"iban": "not an iban"}, headers=auth)
    assert bad.status_code == 422
    changed = await sync_client.patch(path, json={"iban": "NL02RABO0123456789"}, headers=auth)
    assert changed.status_code == 200 and changed.json()["iban"] == "NL02RABO0123456789"
    with committing_sessions() as session:
        [event] = session.exec(select(Event)).all()
    assert event.type == "employee.bankaccount.changed"
    assert event.data["changed_fields"] == ["iban"]
    assert "NL02" not in str(event.data)  # thin payloads: names, never values


def _common(employee) -> dict:
    return {"environment_id": employee.environment_id, "debtor_id": employee.debtor_id,
            "company_id": employee.company_id, "employee_id": employee.id}


READ_ONLY = {
    "wage-components": ("employee.payment.read", lambda e: WageComponent(
        **_common(e), code="BASE", description="Base salary", amount_cents=420000,
        valid_from=date(2026, 1, 1))),
    "leave-balances": ("employee.leave.read", lambda e: LeaveBalance(
        **_common(e), leave_type="statutory", year=2026, balance_hours=120.5)),
    "absences": ("employee.absence.read", lambda e: Absence(
        **_common(e), start_date=date(2026, 3, 1), percentage=50)),
}


@pytest.mark.parametrize("path", sorted(READ_ONLY))
async def test_read_only_slices(
    path: str, sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    scope, make = READ_ONLY[path]
    with committing_sessions() as session, session.begin():
        mine, theirs = make(data.employees[0]), make(data.employees[1])
        session.add_all([mine, theirs])
        session.flush()
        mine_id = mine.id
        connection = session.get(Connection, data.connection.id)
        connection.scopes = [*connection.scopes, scope]
    auth = tokens.connection(data.connection, data.app, f"{scope} employee.info.read")
    e1, e2 = data.employees[0].id, data.employees[1].id
    response = await sync_client.get(f"/v1/employees/{e1}/{path}", headers=auth)
    assert ids(response) == [str(mine_id)]
    assert "ratelimit" in response.headers
    assert (await sync_client.get(f"/v1/employees/{e2}/{path}", headers=auth)).status_code == 404
    lacking = tokens.connection(data.connection, data.app, "employee.info.read")
    denied = await sync_client.get(f"/v1/employees/{e1}/{path}", headers=lacking)
    assert denied.status_code == 403 and denied.json()["required_scope"] == scope


async def test_payroll_runs_per_company(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    c1, c2 = data.companies[:2]
    with committing_sessions() as session, session.begin():
        runs = [PayrollRun(environment_id=c.environment_id, debtor_id=c.debtor_id,
                           company_id=c.id, period="2026-10", status="finalized",
                           employee_count=1, gross_total_cents=500000, net_total_cents=350000)
                for c in (c1, c2)]
        session.add_all(runs)
        session.flush()
        run_id = runs[0].id
        connection = session.get(Connection, data.connection.id)
        connection.scopes = [*connection.scopes, "payroll.run.read"]
    auth = tokens.connection(data.connection, data.app, "payroll.run.read")
    response = await sync_client.get(f"/v1/companies/{c1.id}/payroll-runs", headers=auth)
    assert ids(response) == [str(run_id)]
    assert response.json()["data"][0]["net_total_cents"] == 350000
    other = await sync_client.get(f"/v1/companies/{c2.id}/payroll-runs", headers=auth)
    assert other.status_code == 404
    no_scope = tokens.connection(data.connection, data.app, "company.info.read")
    denied = await sync_client.get(f"/v1/companies/{c1.id}/payroll-runs", headers=no_scope)
    assert denied.status_code == 403
