"""The overview's CSV export, summary, revoke and bulk revoke (SPEC 5.5)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from sqlmodel import select

from services.registry.overview import service as overview_service
from services.registry.overview.repository import NEVER, OverviewRepository
from shared.audit import verify_environment
from shared.db.types import utcnow
from shared.models import AuditEvent, Connection, ConnectionStatus, Event
from shared.runtime import Runtime
from tests.services.registry.conftest import World
from tests.services.registry.support import accountant, set_columns

CSV_HEADERS = {"Accept": "text/csv"}


async def _csv(client: httpx.AsyncClient, world: World, tenant=None, **params):
    response = await client.get("/v1/environment/connections", params=params,
                                headers={**accountant(world, tenant), **CSV_HEADERS})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


async def test_csv_export_holds_the_environment_only(client: httpx.AsyncClient, world: World
                                                     ) -> None:
    rows = await _csv(client, world)
    assert {r["id"] for r in rows} == {str(c.id) for c in world.a.connections}
    company = world.a.users["company"]
    row = next(r for r in rows if r["user_id"] == str(company.id))
    assert row["user_email"] == company.email and row["user_template"] == "company"
    assert row["scopes"] == "company.info.read employee.payment.read"
    b_rows = await _csv(client, world, world.b)
    assert not {r["id"] for r in rows} & {r["id"] for r in b_rows}
    filtered = await _csv(client, world, app=world.apps[1].client_id)
    assert len(filtered) == 1


async def test_csv_export_of_many_rows_spans_batches(client: httpx.AsyncClient, world: World
                                                     ) -> None:
    template = world.a.connections[0]
    with world.sessions() as session:
        session.add_all([
            Connection(environment_id=template.environment_id, user_id=template.user_id,
                       app_id=template.app_id, debtor_id=template.debtor_id,
                       scopes=["company.info.read"], status=ConnectionStatus.REVOKED)
            for _ in range(2100)
        ])
        session.commit()
    rows = await _csv(client, world, sort="-created_at")
    assert len(rows) == len({r["id"] for r in rows}) == 2100 + len(world.a.connections)


async def _all_pages(client: httpx.AsyncClient, world: World, sort: str) -> list[dict]:
    rows, cursor = [], None
    while True:
        params = {"sort": sort, "limit": 3, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/environment/connections", params=params,
                                    headers=accountant(world))
        assert response.status_code == 200, response.text
        rows += response.json()["data"]
        if not (cursor := response.json()["next_cursor"]):
            return rows


@pytest.mark.parametrize("sort", ["created_at", "-created_at", "last_used_at", "-last_used_at"])
async def test_csv_and_pages_agree_on_order_and_content(
    client: httpx.AsyncClient, world: World, sort: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never used counts as the oldest use (first ascending, last descending); equal
    values go by id. The CSV, read in batches of 4, holds the rows of the pages in the
    same order with the same values."""
    monkeypatch.setattr(overview_service, "EXPORT_BATCH", 4)  # SQLite's path
    monkeypatch.setattr(overview_service, "EXPORT_TEXT_BATCH", 4)  # PostgreSQL's
    template, now = world.a.connections[0], utcnow()
    tie = now - timedelta(hours=5)
    uses = [None, tie, None, tie, now - timedelta(days=200), None, tie, now - timedelta(hours=1),
            None, now - timedelta(days=3), tie]
    with world.sessions() as session:
        session.add_all([
            Connection(environment_id=template.environment_id, user_id=template.user_id,
                       app_id=template.app_id, debtor_id=template.debtor_id,
                       scopes=["company.info.read", "employee.bankaccount.read"],
                       status=ConnectionStatus.REVOKED, last_used_at=used)
            for used in uses
        ])
        # Live and unused for 200 days: stale.
        session.add(Connection(environment_id=template.environment_id,
                               user_id=template.user_id, app_id=template.app_id,
                               debtor_id=world.a.debtors[1].id, scopes=["company.info.read"],
                               last_used_at=now - timedelta(days=200)))
        session.commit()
    pages = await _all_pages(client, world, sort)
    never = {r["id"] for r in pages if r["last_used_at"] is None}
    keys = [(datetime.fromisoformat(r["last_used_at"]) if r["last_used_at"] else None,
             r["id"]) for r in pages]
    if sort.lstrip("-") == "last_used_at":
        expected = sorted(keys, key=lambda k: (k[0] or NEVER, uuid.UUID(k[1])),
                          reverse=sort.startswith("-"))
        assert keys == expected
        ids = [k[1] for k in keys]
        positions = [ids.index(i) for i in never]
        edge = range(len(never)) if not sort.startswith("-") else \
            range(len(ids) - len(never), len(ids))
        assert sorted(positions) == list(edge)
    else:
        expected_ids = sorted((k[1] for k in keys), key=uuid.UUID,
                              reverse=sort.startswith("-"))
        assert [k[1] for k in keys] == expected_ids
    rows = await _csv(client, world, sort=sort)
    assert [r["id"] for r in rows] == [p["id"] for p in pages]
    assert len(pages) == len(world.a.connections) + len(uses) + 1
    for row, page in zip(rows, pages, strict=True):
        assert row["app_client_id"] == page["app"]["client_id"]
        assert row["app_name"] == page["app"]["name"]
        assert row["publisher"] == (page["app"]["publisher"] or "")
        assert (row["user_id"], row["user_email"], row["user_template"]) == (
            page["user"]["id"], page["user"]["email"], page["user"]["template"])
        assert row["user_deactivated"] == str(page["user_deactivated"]).lower()
        assert row["stale"] == str(page["stale"]).lower()
        assert row["debtor_id"] == page["debtor_id"]
        assert row["company_ids"] == " ".join(page["company_ids"])
        assert row["scopes"] == " ".join(page["scopes"])
        assert row["sensitive_scopes"] == " ".join(page["sensitive_scopes"])
        assert row["status"] == page["status"]
        for name in ("created_at", "last_used_at", "revoked_at"):
            if page[name] is None:
                assert row[name] == ""
            else:
                assert row[name].endswith("+00:00")
                assert datetime.fromisoformat(row[name]) == datetime.fromisoformat(page[name])
    assert any(r["sensitive_scopes"] == "employee.bankaccount.read" for r in rows)
    assert any(r["stale"] == "true" for r in rows) and any(r["company_ids"] for r in rows)


async def test_csv_cells_cannot_become_formulas(client: httpx.AsyncClient, world: World) -> None:
    with world.sessions() as session:
        app = session.get(type(world.apps[0]), world.apps[0].id)
        app.name = '=HYPERLINK("https://evil.example","x")'
        session.add(app)
        session.commit()
    rows = await _csv(client, world)
    assert all(not r["app_name"].startswith("=") for r in rows)
    assert any(r["app_name"].startswith("'=HYPERLINK") for r in rows)


async def test_summary_per_app(client: httpx.AsyncClient, world: World) -> None:
    response = await client.get("/v1/environment/connections/summary", headers=accountant(world))
    assert response.status_code == 200, response.text
    data = {row["app"]["client_id"]: row for row in response.json()["data"]}
    assert set(data) == {app.client_id for app in world.apps}
    first = data[world.apps[0].client_id]
    assert (first["connections"], first["active"], first["users"], first["debtors"]) == (2, 2, 2, 1)
    assert "employee.payment.read" in first["scopes"]
    assert data[world.apps[1].client_id]["connections"] == 1


async def test_summary_never_used_scopes_across_connections(
        client: httpx.AsyncClient, world: World, runtime: Runtime) -> None:
    """The scopes no connection of the app (in this environment) ever needed: the union
    of the connections' scope-use maps, each with its own times, taken away from the
    scopes granted."""
    now = utcnow()
    first, second, company = world.a.connections

    def used(*scopes: str, days: int = 1) -> dict[str, str]:
        return {s: (now - timedelta(days=days, minutes=i)).isoformat()
                for i, s in enumerate(scopes)}

    set_columns(world, Connection, first.id, scope_used_at=used("company.info.read",
                                                         "employee.info.read"))
    set_columns(world, Connection, company.id, scope_used_at=used(
        "company.info.read", "employee.payment.read", days=3))
    # Environment B's use of every scope is not environment A's.
    set_columns(world, Connection, world.b.connections[0].id, scope_used_at=used(
        "company.info.read", "employee.info.read", "offline_access"))
    response = await client.get("/v1/environment/connections/summary", headers=accountant(world))
    assert response.status_code == 200, response.text
    data = {row["app"]["client_id"]: row for row in response.json()["data"]}
    plan_it, roster = data[world.apps[0].client_id], data[world.apps[1].client_id]
    assert plan_it["scopes"] == ["company.info.read", "employee.info.read",
                                 "employee.payment.read", "offline_access"]
    assert plan_it["never_used_scopes"] == ["offline_access"]
    assert roster["never_used_scopes"] == roster["scopes"] == sorted(second.scopes)
    # The database gives one row per app and scope used, never one per connection.
    async with runtime.async_session() as session:
        pairs = await OverviewRepository(session).used_scopes(world.a.environment.id)
    assert sorted(pairs) == [(first.app_id, s) for s in (
        "company.info.read", "employee.info.read", "employee.payment.read")]


async def test_revoke_needs_a_reason_and_stays_in_the_environment(
    client: httpx.AsyncClient, world: World
) -> None:
    target = world.a.connections[0]
    path = f"/v1/environment/connections/{target.id}/revoke"
    for body in (None, {}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 1001},
                 {"reason": "ok", "environment_id": str(world.b.environment.id)}):
        response = await client.post(path, json=body, headers=accountant(world))
        assert response.status_code == 422, body
    for foreign in (world.b.connections[0].id, uuid.uuid4()):
        response = await client.post(f"/v1/environment/connections/{foreign}/revoke",
                                     json={"reason": "no"}, headers=accountant(world))
        assert response.status_code == 404
    with world.sessions() as session:
        assert all(c.status == "active" for c in session.exec(select(Connection)).all())
        assert session.exec(select(AuditEvent)).all() == []

    response = await client.post(path, json={"reason": "left the firm"},
                                 headers=accountant(world))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "revoked" and body["revoke_reason"] == "left the firm"
    assert body["user"]["id"] == str(target.user_id)
    check = await client.get("/v1/app/connections",
                             headers={"Authorization": f"Bearer {world.connection_token(target)}"})
    assert check.status_code == 401


async def test_bulk_revoke_dry_run_then_for_real(client: httpx.AsyncClient, world: World) -> None:
    app = world.apps[0]
    body = {"filter": {"app": app.client_id}, "reason": "app discontinued", "dry_run": True}
    dry = await client.post("/v1/environment/connections/bulk-revoke", json=body,
                            headers=accountant(world))
    assert dry.status_code == 200, dry.text
    assert dry.json()["count"] == 2 and len(dry.json()["sample"]) == 2
    with world.sessions() as session:
        assert session.exec(select(AuditEvent)).all() == []

    real = await client.post("/v1/environment/connections/bulk-revoke",
                             json={**body, "dry_run": False}, headers=accountant(world))
    assert real.status_code == 200, real.text
    assert real.json()["count"] == 2
    with world.sessions() as session:
        statuses = {c.id: c.status for c in session.exec(select(Connection)).all()}
        for c in world.a.connections:
            expected = "revoked" if c.app_id == app.id else "active"
            assert statuses[c.id] == expected
        assert all(statuses[c.id] == "active" for c in world.b.connections)
        events = session.exec(select(Event)).all()
        assert sorted(e.type for e in events) == ["connection.revoked"] * 2
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
        assert sorted(actions) == ["connection.revoked"] * 2 + ["connections.bulk_revoked"]
        assert verify_environment(session, world.a.environment.id) == []
    again = await client.post("/v1/environment/connections/bulk-revoke",
                              json={**body, "dry_run": False}, headers=accountant(world))
    assert again.json()["count"] == 0


async def test_bulk_revoke_refuses_bad_input(client: httpx.AsyncClient, world: World) -> None:
    for body in ({"filter": {}, "reason": "all"}, {"filter": {"app": "x"}},
                 {"filter": {"app": "x"}, "reason": ""},
                 {"filter": {"environment_id": str(world.b.environment.id)}, "reason": "x"},
                 {"filter": {"scope": "nope"}, "reason": "x"}, "not json"):
        response = await client.post("/v1/environment/connections/bulk-revoke",
                                     json=body, headers=accountant(world))
        assert 400 <= response.status_code < 500, body
        assert response.headers["content-type"] == "application/problem+json"
    foreign = await client.post(
        "/v1/environment/connections/bulk-revoke",
        json={"filter": {"user": str(world.b.users["master_client"].id)}, "reason": "x"},
        headers=accountant(world))
    assert foreign.json()["count"] == 0
    with world.sessions() as session:
        assert all(c.status == "active" for c in session.exec(select(Connection)).all())
