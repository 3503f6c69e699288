"""Optimistic concurrency on sync's records (shared/etag.py): employees, bank accounts,
employments, wage components, leave requests and webhook endpoints carry an ETag and
honour an optional `If-Match` (412 when the record changed meanwhile)."""

from __future__ import annotations

import uuid
from datetime import date

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from shared.models import (
    BankAccount,
    Employee,
    Employment,
    LeaveRequest,
    WageComponent,
    WebhookEndpoint,
)
from tests.fixtures import factories as f
from tests.fixtures.preconditions import STRONG, precondition_failed, walk
from tests.services.sync.conftest import Tokens
from tests.services.sync.test_leave_requests import add_requests
from tests.services.sync.test_slices import add_slices
from tests.services.sync.test_writes import grant
from tests.services.sync.worlds import Data

SCOPES = ("employee.info", "employee.employment", "employee.employment.read",
          "employee.bankaccount", "employee.bankaccount.read", "employee.payment",
          "employee.payment.read", "employee.leave", "employee.leave.read")


def _stored(sessions: sessionmaker[Session], model, ident, field: str):
    def read():
        with sessions() as session:
            value = getattr(session.get(model, uuid.UUID(str(ident))), field)
            return value.isoformat() if isinstance(value, date) else value
    return read


def _component(sessions: sessionmaker[Session], employee: Employee) -> WageComponent:
    with sessions() as session, session.begin():
        row = WageComponent(environment_id=employee.environment_id, debtor_id=employee.debtor_id,
                            company_id=employee.company_id, employee_id=employee.id,
                            code="SAL", description="Salaris", amount_cents=350000,
                            valid_from=date(2026, 1, 1))
        session.add(row)
        session.flush()
        session.expunge(row)
        return row


@pytest.mark.parametrize("kind", ["employee", "bank account", "employment", "wage component"])
async def test_sync_records_carry_an_etag_and_honour_if_match(
    kind: str, sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    grant(committing_sessions, data.connection, *SCOPES)
    auth = tokens.connection(data.connection, data.app, " ".join(SCOPES))
    employee = data.employees[0]
    base = f"/v1/employees/{employee.id}"
    with committing_sessions() as session, session.begin():
        employment, account = add_slices(session, employee)
        employment_id, account_id = employment.id, account.id
    dates = ["2026-12-31", "2026-11-30", "2026-10-31"]
    if kind == "employee":
        url, method, model, ident, field = base, "PATCH", Employee, employee.id, "last_name"
        values = ["Jansen", "de Vries", "Bakker"]
    elif kind == "bank account":
        url, method = f"{base}/bank-accounts/{account_id}", "PATCH"
        model, ident, field = BankAccount, account_id, "account_holder"
        values = ["A. Jansen-Smit", "A. Smit", "J. Smit"]
    elif kind == "employment":
        url, method = f"{base}/employments/{employment_id}", "POST"
        model, ident, field, values = Employment, employment_id, "end_date", dates
    else:
        component = _component(committing_sessions, employee)
        url, method = f"{base}/wage-components/{component.id}", "POST"
        model, ident, field, values = WageComponent, component.id, "valid_to", dates

    async def send(headers: dict[str, str], value) -> httpx.Response:
        if method == "PATCH":
            return await sync_client.patch(url, json={field: value}, headers=headers)
        return await sync_client.post(f"{url}/end", json={field: value}, headers=headers)

    await walk(sync_client, url, auth, send, _stored(committing_sessions, model, ident, field),
               values)


async def test_leave_requests_honour_if_match(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    grant(committing_sessions, data.connection, *SCOPES)
    auth = tokens.connection(data.connection, data.app, " ".join(SCOPES))
    [request_id] = add_requests(committing_sessions, data.employees[0])
    url = f"/v1/employees/{data.employees[0].id}/leave-requests/{request_id}"

    async def send(headers: dict[str, str], status: str) -> httpx.Response:
        return await sync_client.patch(url, json={"status": status}, headers=headers)

    await walk(sync_client, url, auth, send,
               _stored(committing_sessions, LeaveRequest, request_id, "status"),
               ["approved", "cancelled"])


async def test_creates_answer_the_etag_their_get_gives(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    grant(committing_sessions, data.connection, *SCOPES)
    auth = tokens.connection(data.connection, data.app, " ".join(SCOPES))
    base = f"/v1/employees/{data.employees[0].id}"
    added = await sync_client.post(f"{base}/wage-components", headers=auth, json={
        "code": "SAL", "description": "Salaris", "amount_cents": 1, "valid_from": "2026-01-01"})
    assert added.status_code == 201, added.text
    got = await sync_client.get(f"{base}/wage-components/{added.json()['id']}", headers=auth)
    assert got.headers["etag"] == added.headers["etag"]
    filed = await sync_client.post(f"{base}/leave-requests", headers=auth, json={
        "leave_type": "statutory", "start_date": "2026-08-03", "end_date": "2026-08-03",
        "hours": 8.0})
    assert filed.status_code == 201, filed.text
    got = await sync_client.get(filed.headers["location"], headers=auth)
    assert got.headers["etag"] == filed.headers["etag"]


async def test_webhook_endpoints_honour_if_match(
    sync_client: httpx.AsyncClient, tokens: Tokens,
    committing_sessions: sessionmaker[Session],
) -> None:
    with committing_sessions() as session, session.begin():
        app = f.make_app(session)
    auth = tokens.app(app)
    created = await sync_client.post("/v1/webhooks", headers=auth, json={
        "url": "http://127.0.0.1:9/hook", "events": ["employee.updated"]})
    assert created.status_code == 201, created.text
    ident = created.json()["id"]
    url = f"/v1/webhooks/{ident}"
    first = await sync_client.get(url, headers=auth)
    assert first.headers["etag"] == created.headers["etag"]

    async def send(headers: dict[str, str], description: str) -> httpx.Response:
        return await sync_client.patch(url, json={"description": description}, headers=headers)

    stored = _stored(committing_sessions, WebhookEndpoint, ident, "description")
    await walk(sync_client, url, auth, send, stored, ["one", "two", "three"])

    status = _stored(committing_sessions, WebhookEndpoint, ident, "status")
    secret = _stored(committing_sessions, WebhookEndpoint, ident, "secret_ciphertext")
    etag = (await sync_client.get(url, headers=auth)).headers["etag"]
    stale = {**auth, "If-Match": '"0123456789abcdef0123456789abcdef"'}
    precondition_failed(await sync_client.post(f"{url}/disable", headers=stale))
    assert status() == "active"
    disabled = await sync_client.post(f"{url}/disable", headers={**auth, "If-Match": etag})
    assert disabled.status_code == 200 and status() == "disabled"
    assert disabled.headers["etag"] != etag
    precondition_failed(await sync_client.post(f"{url}/enable",
                                               headers={**auth, "If-Match": etag}))
    assert status() == "disabled"
    enabled = await sync_client.post(f"{url}/enable",
                                     headers={**auth, "If-Match": disabled.headers["etag"]})
    assert enabled.status_code == 200 and status() == "active"

    before = secret()
    precondition_failed(await sync_client.post(f"{url}/rotate-secret",
                                               headers={**auth, "If-Match": etag}))
    assert secret() == before
    rotated = await sync_client.post(f"{url}/rotate-secret",
                                     headers={**auth, "If-Match": enabled.headers["etag"]})
    assert rotated.status_code == 200 and secret() != before
    assert STRONG.fullmatch(rotated.headers["etag"])
    assert (await sync_client.get(url, headers=auth)).headers["etag"] == rotated.headers["etag"]

    precondition_failed(await sync_client.delete(url, headers={**auth, "If-Match": etag}))
    assert status() == "active"
    gone = await sync_client.delete(url, headers={**auth, "If-Match": rotated.headers["etag"]})
    assert gone.status_code == 204
    assert (await sync_client.get(url, headers=auth)).status_code == 404
    # A record that no longer exists: 404 whatever `If-Match` says (RFC 9110 13.2.1).
    assert (await sync_client.delete(url, headers={**auth, "If-Match": "*"})).status_code == 404
