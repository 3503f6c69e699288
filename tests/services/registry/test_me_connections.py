"""Manage apps: a user lists, opens and revokes their own connections (SPEC 5.4)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlmodel import col, select

from shared.audit import verify_environment
from shared.models import AuditEvent, Connection, Event, TokenFamily
from shared.runtime import Runtime
from shared.tokens import InvalidToken, TokenVerifier
from tests.services.registry.conftest import World, bearer

PROBLEM = "application/problem+json"


async def test_lists_own_connections_in_the_fixed_shape(client: httpx.AsyncClient,
                                                        world: World) -> None:
    user = world.a.users["master_client"]
    response = await client.get("/v1/me/connections",
                                headers=bearer(world.user_token(user, "connections.read")))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    ids = {c.id for c in world.a.connections if c.user_id == user.id}
    assert {row["id"] for row in body["data"]} == {str(i) for i in ids}
    row = next(r for r in body["data"] if r["id"] == str(world.a.connections[0].id))
    assert set(row) >= {"id", "app", "debtor_id", "company_ids", "scopes", "scope_details",
                        "status", "created_at", "last_used_at"}
    assert set(row["app"]) >= {"client_id", "name"}
    assert row["app"]["name"] == "Plan It" and row["app"]["publisher"] == "Plan It B.V."
    assert row["debtor_id"] == str(world.a.debtors[0].id)
    assert sorted(row["company_ids"]) == sorted(str(c.id) for c in world.a.companies[:2])
    assert row["status"] == "active"
    assert row["scope_details"][0] == {"scope": "company.info.read",
                                       "title": "View debtors and companies",
                                       "sensitivity": "normal"}
    assert row["created_at"].endswith("Z") or row["created_at"].endswith("+00:00")


async def test_scope_titles_follow_accept_language(client: httpx.AsyncClient, world: World
                                                   ) -> None:
    user = world.a.users["master_client"]
    response = await client.get(
        "/v1/me/connections",
        headers={**bearer(world.user_token(user, "connections.read")), "Accept-Language": "nl"},
    )
    row = next(r for r in response.json()["data"] if r["id"] == str(world.a.connections[0].id))
    title = row["scope_details"][0]["title"]
    assert title == "Debiteuren en bedrijven inzien"


async def test_pages_with_a_cursor_and_a_link_header(client: httpx.AsyncClient, world: World
                                                     ) -> None:
    headers = bearer(world.user_token(world.a.users["master_client"], "connections.read"))
    first = await client.get("/v1/me/connections?limit=1", headers=headers)
    assert first.status_code == 200
    cursor = first.json()["next_cursor"]
    assert cursor and 'rel="next"' in first.headers["link"]
    second = await client.get("/v1/me/connections", params={"limit": 1, "cursor": cursor},
                              headers=headers)
    assert second.json()["next_cursor"] is None
    ids = [first.json()["data"][0]["id"], second.json()["data"][0]["id"]]
    assert len(set(ids)) == 2 and ids == sorted(ids)


@pytest.mark.parametrize("query", ["cursor=forged", "cursor=-1", "limit=0", "limit=-5",
                                   "limit=100000000000", "limit=abc"])
async def test_bad_paging_input_is_a_4xx_problem(client: httpx.AsyncClient, world: World,
                                                 query: str) -> None:
    headers = bearer(world.user_token(world.a.users["master_client"], "connections.read"))
    response = await client.get(f"/v1/me/connections?{query}", headers=headers)
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == PROBLEM


async def test_get_one_and_foreign_ids_are_404(client: httpx.AsyncClient, world: World) -> None:
    user = world.a.users["master_client"]
    headers = bearer(world.user_token(user, "connections.read"))
    own = world.a.connections[0]
    assert (await client.get(f"/v1/me/connections/{own.id}", headers=headers)).status_code == 200
    others = [world.a.connections[-1].id, world.b.connections[0].id, uuid.uuid4()]
    for other in others:
        response = await client.get(f"/v1/me/connections/{other}", headers=headers)
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
    assert (await client.get("/v1/me/connections/not-a-uuid", headers=headers)).status_code == 422


async def test_scopes_and_token_kinds_are_enforced(client: httpx.AsyncClient, world: World
                                                   ) -> None:
    user = world.a.users["master_client"]
    no_scope = await client.get("/v1/me/connections",
                                headers=bearer(world.user_token(user, "connections.manage")))
    assert no_scope.status_code == 403
    assert no_scope.json()["type"] == "urn:koppel:problem:insufficient-scope"
    read_only = await client.delete(f"/v1/me/connections/{world.a.connections[0].id}",
                                    headers=bearer(world.user_token(user, "connections.read")))
    assert read_only.status_code == 403
    as_app = await client.get("/v1/me/connections", headers=bearer(
        world.app_token(world.first_party, "connections.read")))
    assert as_app.status_code == 403
    as_connection = await client.get("/v1/me/connections", headers=bearer(
        world.connection_token(world.a.connections[0])))
    assert as_connection.status_code == 403
    assert (await client.get("/v1/me/connections")).status_code == 401
    garbage = await client.get("/v1/me/connections", headers=bearer("a.b.c"))
    assert garbage.status_code == 401 and garbage.headers["content-type"] == PROBLEM


async def test_revoke_is_immediate_audited_and_evented(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    connection = world.a.connections[0]
    partner_token = world.connection_token(connection)
    verifier = TokenVerifier.from_runtime(runtime)
    try:
        for _ in range(3):  # the status mirror now knows it active
            await verifier.verify(partner_token)
        user = world.a.users["master_client"]
        response = await client.delete(f"/v1/me/connections/{connection.id}",
                                       headers=bearer(world.user_token(user)))
        assert response.status_code == 204 and response.content == b""
        with pytest.raises(InvalidToken):
            await verifier.verify(partner_token)
    finally:
        verifier.close()

    with world.sessions() as session:
        stored = session.get(Connection, connection.id)
        assert stored.status == "revoked" and stored.revoked_at is not None
        assert stored.revoked_by == f"user:{user.id}"
        families = session.exec(select(TokenFamily).where(
            TokenFamily.connection_id == connection.id)).all()
        assert families and all(fam.revoked_at is not None for fam in families)
        audit = session.exec(select(AuditEvent).where(
            AuditEvent.subject_id == str(connection.id))).all()
        assert [(e.action, e.actor_type, e.actor_id) for e in audit] == [
            ("connection.revoked", "user", str(user.id))]
        events = session.exec(select(Event).where(Event.connection_id == connection.id)).all()
        assert [(e.type, e.app_id) for e in events] == [("connection.revoked", connection.app_id)]
        assert verify_environment(session, connection.environment_id) == []
        others = session.exec(select(Connection).where(
            col(Connection.id) != connection.id)).all()
        assert all(c.status == "active" for c in others)

    listed = await client.get(f"/v1/me/connections/{connection.id}",
                              headers=bearer(world.user_token(user, "connections.read")))
    assert listed.json()["status"] == "revoked"


async def test_revoking_another_users_connection_is_404_and_changes_nothing(
    client: httpx.AsyncClient, world: World
) -> None:
    headers = bearer(world.user_token(world.a.users["master_client"]))
    for other in (world.a.connections[-1], world.b.connections[0]):
        response = await client.delete(f"/v1/me/connections/{other.id}", headers=headers)
        assert response.status_code == 404
    with world.sessions() as session:
        assert all(c.status == "active" for c in session.exec(select(Connection)).all())
        assert session.exec(select(AuditEvent)).all() == []
        assert session.exec(select(Event)).all() == []


async def test_revoking_twice_is_harmless(client: httpx.AsyncClient, world: World) -> None:
    connection = world.a.connections[0]
    headers = bearer(world.user_token(world.a.users["master_client"]))
    for _ in range(2):
        response = await client.delete(f"/v1/me/connections/{connection.id}", headers=headers)
        assert response.status_code == 204
    with world.sessions() as session:
        assert len(session.exec(select(AuditEvent)).all()) == 1
