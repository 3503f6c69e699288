"""The environment overview for accountants (SPEC 5.5): list, filters, order, pages."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest

from shared.db.types import utcnow
from shared.models import Connection, User
from tests.services.registry.conftest import World, bearer
from tests.services.registry.support import accountant, set_columns

PROBLEM = "application/problem+json"


async def _ids(client: httpx.AsyncClient, headers, **params) -> list[str]:
    response = await client.get("/v1/environment/connections", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["data"]]


async def test_lists_every_connection_of_the_environment_only(client: httpx.AsyncClient,
                                                              world: World) -> None:
    response = await client.get("/v1/environment/connections", headers=accountant(world))
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert {row["id"] for row in data} == {str(c.id) for c in world.a.connections}
    foreign = {str(c.id) for c in world.b.connections} | {str(world.b.environment.id)}
    assert not any(ident in response.text for ident in foreign)
    row = next(r for r in data if r["id"] == str(world.a.connections[-1].id))
    company = world.a.users["company"]
    assert row["user"] == {"id": str(company.id), "email": company.email, "template": "company"}
    assert row["user_deactivated"] is False and row["stale"] is False
    assert row["sensitive_scopes"] == ["employee.payment.read"]


@pytest.mark.parametrize("template", ["master_client", "company", "employee"])
async def test_only_accountants_may_look(client: httpx.AsyncClient, world: World,
                                         template: str) -> None:
    headers = bearer(world.user_token(world.a.users[template]))
    for method, path in (("GET", "/v1/environment/connections"),
                         ("GET", "/v1/environment/connections/summary")):
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 403 and response.headers["content-type"] == PROBLEM


async def test_the_overview_scopes_are_required(client: httpx.AsyncClient, world: World) -> None:
    headers = accountant(world, scope="connections.read connections.manage")
    assert (await client.get("/v1/environment/connections", headers=headers)).status_code == 403
    read_only = accountant(world, scope="environment.connections.read")
    response = await client.post(f"/v1/environment/connections/{world.a.connections[0].id}"
                                 "/revoke", json={"reason": "x"}, headers=read_only)
    assert response.status_code == 403


async def test_filters(client: httpx.AsyncClient, world: World) -> None:
    a = world.a
    headers = accountant(world)
    by_user = {str(c.id) for c in a.connections if c.user_id == a.users["master_client"].id}
    assert set(await _ids(client, headers, user=str(a.users["master_client"].id))) == by_user
    by_app = {str(c.id) for c in a.connections if c.app_id == world.apps[1].id}
    assert set(await _ids(client, headers, app=world.apps[1].client_id)) == by_app
    assert set(await _ids(client, headers, debtor=str(a.debtors[0].id))) == {
        str(c.id) for c in a.connections}
    assert await _ids(client, headers, debtor=str(a.debtors[1].id)) == []
    assert await _ids(client, headers, debtor=str(world.b.debtors[0].id)) == []
    assert len(await _ids(client, headers, company=str(a.companies[1].id))) == 2
    assert await _ids(client, headers, scope="employee.payment.read") == [
        str(a.connections[-1].id)]
    assert await _ids(client, headers, scope="employee.payment") == []
    set_columns(world, Connection, a.connections[0].id, scopes=["employee.info"])
    set_columns(world, Connection, a.connections[1].id, scopes=["company.info.read"])
    assert await _ids(client, headers, scope="employee.info.read") == [str(a.connections[0].id)]
    assert await _ids(client, headers, status="suspended") == []
    set_columns(world, User, a.users["company"].id, active=False)
    assert await _ids(client, headers, user_deactivated="true") == [str(a.connections[-1].id)]
    assert len(await _ids(client, headers, user_deactivated="false")) == 2


async def test_stale_and_date_ranges(client: httpx.AsyncClient, world: World) -> None:
    a, now = world.a, utcnow()
    old, used, fresh = a.connections
    set_columns(world, Connection, old.id, created_at=now - timedelta(days=200))
    set_columns(world, Connection, used.id, created_at=now - timedelta(days=200),
         last_used_at=now - timedelta(days=2))
    headers = accountant(world)
    assert await _ids(client, headers, stale="true") == [str(old.id)]
    assert set(await _ids(client, headers, stale="false")) == {str(used.id), str(fresh.id)}
    cutoff = (now - timedelta(days=100)).isoformat()
    assert set(await _ids(client, headers, created_before=cutoff)) == {str(old.id), str(used.id)}
    assert await _ids(client, headers, created_after=cutoff) == [str(fresh.id)]
    assert await _ids(client, headers, last_used_after=cutoff) == [str(used.id)]
    rows = (await client.get("/v1/environment/connections", params={"stale": "true"},
                             headers=headers)).json()["data"]
    assert rows[0]["stale"] is True


@pytest.mark.parametrize("sort", ["created_at", "-created_at", "last_used_at", "-last_used_at"])
async def test_keyset_pages_are_stable_and_complete(client: httpx.AsyncClient, world: World,
                                                    sort: str) -> None:
    now = utcnow()
    same = now - timedelta(days=1)  # ties: the id decides
    for i, connection in enumerate(world.a.connections):
        set_columns(world, Connection, connection.id, created_at=same,
             last_used_at=None if i == 0 else now - timedelta(hours=i))
    headers = accountant(world)
    everything = await _ids(client, headers, sort=sort, limit=100)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"sort": sort, "limit": 1, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/environment/connections", params=params,
                                    headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [row["id"] for row in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            assert "link" not in response.headers
            break
        assert response.headers["link"].endswith('>; rel="next"')
    assert seen == everything and len(seen) == len(world.a.connections) and pages == 3


@pytest.mark.parametrize("params", [
    {"cursor": "-1"}, {"cursor": "eyJrIjoiaWQifQ.AAAA"}, {"limit": "0"}, {"limit": "-3"},
    {"limit": "99999999999999999999"}, {"sort": "email"}, {"status": "gone"},
    {"scope": "no.such.scope"}, {"user": "nobody"}, {"created_after": "yesterday"},
    {"created_after": "2026-01-01T00:00:00"}, {"stale": "maybe"},
])
async def test_bad_input_is_a_4xx_problem(client: httpx.AsyncClient, world: World,
                                          params: dict) -> None:
    response = await client.get("/v1/environment/connections", params=params,
                                headers=accountant(world))
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == PROBLEM


async def test_a_cursor_only_fits_its_own_order_and_caller(client: httpx.AsyncClient,
                                                           world: World) -> None:
    headers = accountant(world)
    first = await client.get("/v1/environment/connections?limit=1", headers=headers)
    cursor = first.json()["next_cursor"]
    other_order = await client.get("/v1/environment/connections",
                                   params={"limit": 1, "cursor": cursor, "sort": "-created_at"},
                                   headers=headers)
    assert other_order.status_code == 400
    edited = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    tampered = await client.get("/v1/environment/connections", params={"cursor": edited},
                                headers=headers)
    assert tampered.status_code == 400
    # The cursor of A's list, used in B, still shows only B.
    in_b = await client.get("/v1/environment/connections", params={"cursor": cursor},
                            headers=accountant(world, world.b))
    assert all(row["id"] in {str(c.id) for c in world.b.connections}
               for row in in_b.json()["data"])


async def test_tenant_ids_in_the_query_are_refused(client: httpx.AsyncClient, world: World
                                                   ) -> None:
    response = await client.get(
        "/v1/environment/connections",
        params={"environment_id": str(world.b.environment.id)},
        headers={**accountant(world), "X-Tenant-ID": str(world.b.environment.id)},
    )
    assert response.status_code == 422
    plain = await client.get("/v1/environment/connections",
                             headers={**accountant(world), "X-Tenant-ID": str(uuid.uuid4())})
    assert {r["id"] for r in plain.json()["data"]} == {str(c.id) for c in world.a.connections}
