"""An employee's own first-party login (SECURITY 35): it reads its own record, files and
cancels its own leave requests, and nothing more, whatever scopes its token carries.

These were holes: the same token added a salary line to itself, ended its own salary
component and employment, changed its own IBAN and read company payroll totals.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from services.sync.app import create_app
from tests.security.conftest import Pair, changed_tables, fingerprint
from tests.services.conftest import running


@pytest.fixture
async def sync(pair: Pair) -> httpx.AsyncClient:
    async with running(create_app(pair.world.settings)) as client:
        yield client


def _own(pair: Pair, kind: str) -> str:
    """The id of a row of `kind` of the employee user's own record."""
    own = pair.a.employees[0].id
    return next(str(r.id) for r in pair.a.slices[kind] if r.employee_id == own)


async def test_line35_an_employee_changes_no_pay_employment_or_bank_account(
    pair: Pair, sync: httpx.AsyncClient, engine: Engine
) -> None:
    me = str(pair.a.employees[0].id)
    company = str(pair.a.employees[0].company_id)
    headers = pair.headers("employee")
    before = fingerprint(engine)
    writes = [
        ("POST", f"/v1/employees/{me}/wage-components",
         {"code": "SALARY", "description": "raise", "amount_cents": 500000,
          "valid_from": "2026-01-01"}),
        ("POST", f"/v1/employees/{me}/wage-components/{_own(pair, 'component')}/end",
         {"valid_to": "2026-01-31"}),
        ("POST", f"/v1/employees/{me}/employments/{_own(pair, 'employment')}/end",
         {"end_date": "2026-12-31"}),
        ("PATCH", f"/v1/employees/{me}/bank-accounts/{_own(pair, 'account')}",
         {"iban": "NL02RABO0123456789"}),
        ("PATCH", f"/v1/employees/{me}", {"first_name": "Boss"}),
        ("POST", f"/v1/companies/{company}/employees",
         {"number": "X-1", "first_name": "New", "last_name": "Hire"}),
        ("PATCH", f"/v1/employees/{me}/leave-requests/{_own(pair, 'leave_request')}",
         {"status": "approved"}),
    ]
    for method, url, body in writes:
        response = await sync.request(method, url, json=body, headers=headers)
        assert response.status_code == 403, (method, url, response.text)
    for url in (f"/v1/companies/{company}/payroll-runs", "/v1/changes"):
        response = await sync.get(url, headers=headers)
        assert response.status_code == 403, (url, response.text)
    assert changed_tables(before, fingerprint(engine)) == []


async def test_an_employee_reads_its_own_record_only(
    pair: Pair, sync: httpx.AsyncClient
) -> None:
    me, colleague = pair.a.employees[0], pair.a.employees[1]
    headers = pair.headers("employee")
    listed = await sync.get(f"/v1/companies/{me.company_id}/employees", headers=headers)
    assert listed.status_code == 200, listed.text
    assert [row["id"] for row in listed.json()["data"]] == [str(me.id)]
    for path in ("", "/wage-components", "/bank-accounts", "/employments", "/leave-requests",
                 "/leave-balances", "/absences"):
        own = await sync.get(f"/v1/employees/{me.id}{path}", headers=headers)
        assert own.status_code == 200, (path, own.text)
        other = await sync.get(f"/v1/employees/{colleague.id}{path}", headers=headers)
        assert other.status_code == 404, (path, other.text)
    companies = await sync.get("/v1/companies", headers=headers)
    assert [row["id"] for row in companies.json()["data"]] == [str(me.company_id)]


async def test_an_employee_files_and_cancels_its_own_leave(
    pair: Pair, sync: httpx.AsyncClient
) -> None:
    me = pair.a.employees[0].id
    headers = pair.headers("employee")
    filed = await sync.post(f"/v1/employees/{me}/leave-requests", headers=headers,
                            json={"leave_type": "statutory", "hours": 8.0,
                                  "start_date": "2026-09-01", "end_date": "2026-09-01"})
    assert filed.status_code == 201, filed.text
    url = f"/v1/employees/{me}/leave-requests/{filed.json()['id']}"
    approved = await sync.patch(url, json={"status": "approved"}, headers=headers)
    assert approved.status_code == 403, approved.text
    cancelled = await sync.patch(url, json={"status": "cancelled"}, headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    # An HR manager of the company may decide on leave (the same rule, another caller).
    hr = pair.headers("hr_manager")
    refiled = await sync.post(f"/v1/employees/{me}/leave-requests", headers=headers,
                              json={"leave_type": "statutory", "hours": 8.0,
                                    "start_date": "2026-10-01", "end_date": "2026-10-01"})
    decided = await sync.patch(f"/v1/employees/{me}/leave-requests/{refiled.json()['id']}",
                               json={"status": "approved"}, headers=hr)
    assert decided.status_code == 200, decided.text
