"""The partner's view: an app lists and disconnects its own connections (SPEC 5.6)."""

from __future__ import annotations

import uuid

import httpx
from sqlmodel import select

from shared.models import AuditEvent, Connection, Event
from tests.services.registry.conftest import World, bearer


async def test_lists_its_connections_in_every_environment_without_emails(
    client: httpx.AsyncClient, world: World
) -> None:
    app = world.apps[1]
    response = await client.get("/v1/app/connections", headers=bearer(world.app_token(app)))

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    expected = {c.id for c in world.a.connections + world.b.connections if c.app_id == app.id}
    assert {row["id"] for row in data} == {str(i) for i in expected}
    assert {row["environment_id"] for row in data} == {str(world.a.environment.id),
                                                       str(world.b.environment.id)}
    assert "@" not in response.text
    assert all("user" not in row for row in data)
    assert all(row["app"]["client_id"] == app.client_id for row in data)


async def test_filters_by_status_and_pages(client: httpx.AsyncClient, world: World) -> None:
    app = world.apps[0]
    headers = bearer(world.app_token(app))
    first = await client.get("/v1/app/connections?limit=2", headers=headers)
    rest = await client.get("/v1/app/connections",
                            params={"limit": 2, "cursor": first.json()["next_cursor"]},
                            headers=headers)
    ids = [r["id"] for r in first.json()["data"] + rest.json()["data"]]
    assert len(ids) == len(set(ids)) == 4
    revoked = await client.get("/v1/app/connections?status=revoked", headers=headers)
    assert revoked.json()["data"] == []
    bad = await client.get("/v1/app/connections?status=gone", headers=headers)
    assert bad.status_code == 422


async def test_disconnect_revokes_like_a_user(client: httpx.AsyncClient, world: World) -> None:
    connection = world.b.connections[0]
    app = world.apps[0]
    response = await client.post(f"/v1/app/connections/{connection.id}/revoke",
                                 json={"reason": "customer cancelled"},
                                 headers=bearer(world.app_token(app)))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "revoked"
    with world.sessions() as session:
        stored = session.get(Connection, connection.id)
        assert stored.status == "revoked" and stored.revoke_reason == "customer cancelled"
        audit = session.exec(select(AuditEvent)).one()
        assert (audit.action, audit.actor_type, audit.actor_id) == (
            "connection.revoked", "app", app.client_id)
        assert session.exec(select(Event)).one().type == "connection.revoked"
    connection_token = world.connection_token(connection)
    check = await client.get("/v1/me/connections", headers=bearer(connection_token))
    assert check.status_code == 401


async def test_another_apps_connection_is_404(client: httpx.AsyncClient, world: World) -> None:
    foreign = next(c for c in world.a.connections if c.app_id == world.apps[0].id)
    headers = bearer(world.app_token(world.apps[1]))
    for path in (f"/v1/app/connections/{foreign.id}", f"/v1/app/connections/{uuid.uuid4()}"):
        assert (await client.get(path, headers=headers)).status_code == 404
    response = await client.post(f"/v1/app/connections/{foreign.id}/revoke", headers=headers)
    assert response.status_code == 404
    with world.sessions() as session:
        assert session.get(Connection, foreign.id).status == "active"
        assert session.exec(select(AuditEvent)).all() == []


async def test_user_tokens_cannot_use_the_partner_view(client: httpx.AsyncClient,
                                                       world: World) -> None:
    for token in (world.user_token(world.a.users["master_client"]),
                  world.connection_token(world.a.connections[0])):
        response = await client.get("/v1/app/connections", headers=bearer(token))
        assert response.status_code == 403


async def test_an_oversized_reason_is_refused(client: httpx.AsyncClient, world: World) -> None:
    connection = world.a.connections[0]
    response = await client.post(f"/v1/app/connections/{connection.id}/revoke",
                                 json={"reason": "x" * 5000},
                                 headers=bearer(world.app_token(world.apps[0])))
    assert response.status_code == 422
    with world.sessions() as session:
        assert session.get(Connection, connection.id).status == "active"
