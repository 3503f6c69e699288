"""Hostile input (SECURITY 20, 23, 33): every bad request is a 4xx problem document and
changes nothing; another environment's ids are 404 everywhere."""

from __future__ import annotations

import httpx
import pytest
from sqlmodel import select

from shared.models import AuditEvent, Connection, EnvironmentAppPolicy, Event, User
from tests.services.registry.conftest import World, bearer
from tests.services.registry.support import accountant

WRITES = [
    ("POST", "/v1/environment/connections/bulk-revoke"),
    ("POST", "/v1/environment/connections/{cid}/revoke"),
    ("PUT", "/v1/environment/policy/apps/{client_id}"),
    ("PUT", "/v1/environment/policy/consent-templates"),
]


def _nothing_changed(world: World) -> None:
    with world.sessions() as session:
        assert all(c.status == "active" for c in session.exec(select(Connection)).all())
        assert session.exec(select(AuditEvent)).all() == []
        assert session.exec(select(Event)).all() == []
        assert session.exec(select(EnvironmentAppPolicy)).all() == []


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"reason": "\xff\xfe"}',
    b'{"reason": "' + b"x" * 2_000_000 + b'"}',
    b"null",
    b"",
])
async def test_malformed_bodies_are_4xx_and_change_nothing(client: httpx.AsyncClient,
                                                          world: World, body: bytes) -> None:
    headers = {**accountant(world), "Content-Type": "application/json"}
    for method, path in WRITES:
        path = path.format(cid=world.a.connections[0].id, client_id=world.apps[0].client_id)
        response = await client.request(method, path, content=body, headers=headers)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert response.headers["content-type"] == "application/problem+json"
    _nothing_changed(world)


async def test_environment_b_is_invisible_to_environment_a(client: httpx.AsyncClient,
                                                           world: World) -> None:
    b = world.b
    headers = accountant(world)
    for connection in b.connections:
        for method, path, body in (
            ("GET", f"/v1/me/connections/{connection.id}", None),
            ("DELETE", f"/v1/me/connections/{connection.id}", None),
            ("POST", f"/v1/environment/connections/{connection.id}/revoke", {"reason": "x"}),
        ):
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status_code == 404, (method, path)
    foreign_ids = {str(x) for x in [b.environment.id, *[d.id for d in b.debtors],
                                   *[c.id for c in b.companies], *[u.id for u in b.users.values()],
                                   *[c.id for c in b.connections]]}
    for params in ({}, {"user": str(b.users["master_client"].id)},
                   {"debtor": str(b.debtors[0].id)}, {"company": str(b.companies[0].id)}):
        for accept in ("application/json", "text/csv"):
            response = await client.get("/v1/environment/connections", params=params,
                                        headers={**headers, "Accept": accept})
            assert response.status_code == 200
            leaked = {i for i in foreign_ids if i in response.text} - set(params.values())
            assert not leaked
    for path in ("/v1/environment/connections/summary", "/v1/environment/audit-events",
                 "/v1/environment/policy", "/v1/me/connections"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 200
        assert not {i for i in foreign_ids if i in response.text}
    bulk = await client.post("/v1/environment/connections/bulk-revoke", headers=headers,
                             json={"filter": {"debtor": str(b.debtors[0].id)}, "reason": "x"})
    assert bulk.json()["count"] == 0
    _nothing_changed(world)


async def test_an_employee_cannot_reach_the_overview_or_others_connections(
    client: httpx.AsyncClient, world: World
) -> None:
    headers = bearer(world.user_token(world.a.users["employee"]))
    for method, path in (("GET", "/v1/environment/connections"),
                         ("POST", "/v1/environment/connections/bulk-revoke")):
        response = await client.request(method, path, json={"filter": {"app": "x"},
                                                             "reason": "x"}, headers=headers)
        assert response.status_code == 403
    for connection in world.a.connections:
        response = await client.delete(f"/v1/me/connections/{connection.id}", headers=headers)
        assert response.status_code == 404
    assert (await client.get("/v1/me/connections", headers=headers)).json()["data"] == []
    _nothing_changed(world)


async def test_a_deactivated_users_token_is_refused(client: httpx.AsyncClient, world: World
                                                    ) -> None:
    user = world.a.users["accountant"]
    token = world.user_token(user)
    with world.sessions() as session:
        row = session.get(User, user.id)
        row.active = False
        session.add(row)
        session.commit()
    response = await client.get("/v1/environment/connections", headers=bearer(token))
    assert response.status_code == 401


async def test_nul_characters_are_a_4xx_or_stored_whole(client: httpx.AsyncClient,
                                                        world: World) -> None:
    headers = accountant(world)
    listed = await client.get("/v1/environment/connections", params={"app": "a\x00b"},
                              headers=headers)
    assert listed.status_code in (200, 400)
    target = world.a.connections[0]
    response = await client.post(f"/v1/environment/connections/{target.id}/revoke",
                                 json={"reason": "a\x00b"}, headers=headers)
    assert response.status_code in (200, 400)
    with world.sessions() as session:
        stored = session.get(Connection, target.id)
        if response.status_code == 400:
            assert stored.status == "active"
            assert session.exec(select(AuditEvent)).all() == []
        else:
            assert stored.revoke_reason == "a\x00b"
