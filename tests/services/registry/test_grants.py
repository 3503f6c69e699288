"""The grant management endpoint (Grant Management for OAuth 2.0, section 6) on the
registry: a partner app queries and revokes its own grants (connections) with
client-credentials tokens carrying `grant_management_query` / `grant_management_revoke`;
another app's grant answers like an unknown one (404)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
from sqlmodel import select

from services.registry.app import create_app
from services.sync.app import create_app as create_sync
from shared.config import Settings
from shared.db.types import utcnow
from shared.models import AuditEvent, Connection, Event, TokenFamily, UserTemplate
from tests.fixtures.auth_server import AuthServer, new_client
from tests.services.auth.conftest import Tree, create_user
from tests.services.auth.support import AuthRequest, Browser, obtain_tokens, post_form, refresh
from tests.services.conftest import running
from tests.services.registry.conftest import World, bearer
from tests.services.registry.support import fresh_address, registry_settings

BOTH = "grant_management_query grant_management_revoke"


async def test_a_partner_queries_and_revokes_its_grant_with_real_tokens(
    settings: Settings, auth_server: AuthServer,
) -> None:
    demo = auth_server.demo
    tree = Tree(demo["environment"]["id"],
                [(d["id"], [c["id"] for c in d["companies"]]) for d in demo["debtors"]])
    user = create_user(auth_server, tree, UserTemplate.MASTER_CLIENT)
    with auth_server.sessions() as session, session.begin():
        partner = new_client(session, auth_server.keyring, name="Grant Keeper")
    agent = Browser(auth_server, fresh_address())
    try:
        linked = obtain_tokens(auth_server, agent, AuthRequest(
            partner, scope="company.info.read offline_access"), user)
    finally:
        agent.close()
    grant_id = linked["grant_id"]
    app_token = post_form(auth_server, "/token", partner,
                          {"grant_type": "client_credentials", "scope": BOTH})
    assert app_token.status_code == 200, app_token.text
    assert app_token.json()["scope"] == BOTH
    headers = bearer(app_token.json()["access_token"])
    metadata = httpx.get(f"{auth_server.url}/.well-known/openid-configuration").json()
    path = f"/v1/grants/{grant_id}"
    assert metadata["grant_management_endpoint"] + f"/{grant_id}" == \
        f"{settings.registry_url}{path}"

    configured = registry_settings(settings, auth_server)
    async with running(create_app(configured)) as registry, \
            running(create_sync(configured)) as sync:
        queried = await registry.get(path, headers=headers)
        assert queried.status_code == 200, queried.text
        assert queried.headers["cache-control"] == "no-store"
        body = queried.json()
        assert body["grant_id"] == grant_id
        assert body["scopes"] == [{"scope": "company.info.read"}, {"scope": "offline_access"}]
        [detail] = body["authorization_details"]
        debtor_id, company_ids = tree.debtors[0]
        assert detail == {"type": "koppel_connection", "locations": [configured.sync_url],
                          "environment_id": tree.environment_id, "debtor_id": debtor_id,
                          "company_ids": sorted(company_ids)}
        assert body["status"] == "active" and body["expires_at"] is None
        assert body["created_at"] and body["revoked_at"] is None
        assert user.email not in queried.text and user.id not in queried.text

        theirs = bearer(linked["access_token"])
        assert (await sync.get("/v1/companies", headers=theirs)).status_code == 200
        revoked = await registry.delete(path, headers=headers)
        assert revoked.status_code == 204 and revoked.content == b""
        # The connection's tokens are refused on the very next call.
        assert (await sync.get("/v1/companies", headers=theirs)).status_code == 401
        after = await registry.get(path, headers=headers)
        assert after.json()["status"] == "revoked" and after.json()["revoked_at"]
        # Revoking a revoked grant changes nothing and still answers 204.
        assert (await registry.delete(path, headers=headers)).status_code == 204
    gone = refresh(auth_server, partner, linked["refresh_token"])
    assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant"

    with auth_server.sessions() as session:
        stored = session.get(Connection, uuid.UUID(grant_id))
        assert stored.status == "revoked" and stored.revoked_by == f"app:{partner.client_id}"
        audit = session.exec(select(AuditEvent).where(
            AuditEvent.subject_id == grant_id, AuditEvent.action == "connection.revoked")).one()
        assert (audit.actor_type, audit.actor_id) == ("app", partner.client_id)
        assert audit.details["token_families"] == 1
        events = session.exec(select(Event).where(
            Event.connection_id == uuid.UUID(grant_id),
            Event.type == "connection.revoked")).all()
        assert len(events) == 1
        families = session.exec(select(TokenFamily).where(
            TokenFamily.connection_id == uuid.UUID(grant_id))).all()
        assert families and all(f.revoked_at is not None for f in families)


async def test_another_apps_grant_is_404_and_stays(client: httpx.AsyncClient,
                                                   world: World) -> None:
    foreign = next(c for c in world.a.connections if c.app_id == world.apps[0].id)
    headers = bearer(world.app_token(world.apps[1], BOTH))
    for grant_id in (foreign.id, uuid.uuid4(), "not-a-grant", "9" * 300):
        assert (await client.get(f"/v1/grants/{grant_id}", headers=headers)).status_code == 404
        response = await client.delete(f"/v1/grants/{grant_id}", headers=headers)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    with world.sessions() as session:
        assert session.get(Connection, foreign.id).status == "active"
        assert session.exec(select(AuditEvent)).all() == []
        assert session.exec(select(Event)).all() == []
    # Its own app sees it.
    own = await client.get(f"/v1/grants/{foreign.id}",
                           headers=bearer(world.app_token(world.apps[0], BOTH)))
    assert own.status_code == 200 and own.json()["grant_id"] == str(foreign.id)


async def test_each_call_needs_its_scope(client: httpx.AsyncClient, world: World) -> None:
    connection = next(c for c in world.a.connections if c.app_id == world.apps[0].id)
    path = f"/v1/grants/{connection.id}"
    app = world.apps[0]
    query_only = bearer(world.app_token(app, "grant_management_query"))
    revoke_only = bearer(world.app_token(app, "grant_management_revoke"))
    webhooks = bearer(world.app_token(app, "webhooks.manage"))
    assert (await client.get(path, headers=query_only)).status_code == 200
    for headers in (revoke_only, webhooks):
        response = await client.get(path, headers=headers)
        assert response.status_code == 403, response.text
    for headers in (query_only, webhooks):
        assert (await client.delete(path, headers=headers)).status_code == 403
    # Users and connections are not apps: never, whatever their scopes.
    for token in (world.user_token(world.a.users["master_client"],
                                   f"{BOTH} connections.read connections.manage"),
                  world.connection_token(connection)):
        assert (await client.get(path, headers=bearer(token))).status_code == 403
        assert (await client.delete(path, headers=bearer(token))).status_code == 403
    with world.sessions() as session:
        assert session.get(Connection, connection.id).status == "active"
    assert (await client.delete(path, headers=revoke_only)).status_code == 204
    with world.sessions() as session:
        assert session.get(Connection, connection.id).status == "revoked"


def test_client_credentials_give_the_grant_management_scopes_without_registration(
    auth_server: AuthServer,
) -> None:
    partner = auth_server.clients["basic"]
    assert "grant_management_query" not in partner.scopes
    for scope in ("grant_management_query", "grant_management_revoke", BOTH):
        response = post_form(auth_server, "/token", partner,
                             {"grant_type": "client_credentials", "scope": scope})
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == scope
        assert "grant_id" not in response.json()
    # Without a scope, still only webhooks.manage (as before).
    default = post_form(auth_server, "/token", partner, {"grant_type": "client_credentials"})
    assert default.json()["scope"] == "webhooks.manage"
    # A public client has no client credentials at all.
    public = post_form(auth_server, "/token", auth_server.clients["public"],
                       {"grant_type": "client_credentials", "scope": BOTH})
    assert public.status_code in (400, 401)


async def test_a_grant_shows_the_connections_expiry(client: httpx.AsyncClient,
                                                    world: World) -> None:
    connection = next(c for c in world.a.connections if c.app_id == world.apps[0].id)
    path = f"/v1/grants/{connection.id}"
    headers = bearer(world.app_token(world.apps[0], BOTH))
    assert (await client.get(path, headers=headers)).json()["expires_at"] is None
    expires = utcnow() + timedelta(days=30)
    with world.sessions() as session, session.begin():
        session.get(Connection, connection.id).expires_at = expires
    shown = (await client.get(path, headers=headers)).json()
    assert datetime.fromisoformat(shown["expires_at"]) == expires
