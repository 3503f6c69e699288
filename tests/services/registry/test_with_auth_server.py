"""End to end with the real auth service: tokens it issues are accepted by the registry,
and a revoke through Manage apps makes the app's unexpired access token fail at once."""

from __future__ import annotations

import uuid

from sqlmodel import select

from services.registry.app import create_app
from shared.config import Settings
from shared.models import Connection, UserTemplate
from tests.fixtures.auth_server import AuthServer, new_client
from tests.services.auth.conftest import Tree, create_user
from tests.services.auth.support import AuthRequest, Browser, obtain_tokens, post_form
from tests.services.conftest import running
from tests.services.registry.support import fresh_address, registry_settings

FIRST_PARTY_SCOPE = "openid connections.read connections.manage"


async def test_manage_apps_revoke_with_real_tokens(settings: Settings,
                                                   auth_server: AuthServer) -> None:
    demo = auth_server.demo
    tree = Tree(demo["environment"]["id"],
                [(d["id"], [c["id"] for c in d["companies"]]) for d in demo["debtors"]])
    user = create_user(auth_server, tree, UserTemplate.MASTER_CLIENT)
    with auth_server.sessions() as session, session.begin():
        partner_app = new_client(session, auth_server.keyring, name="E2E Planner")
    agent = Browser(auth_server, fresh_address())
    try:
        partner = obtain_tokens(auth_server, agent,
                                AuthRequest(partner_app, scope="company.info.read"), user)
        mine = obtain_tokens(auth_server, agent, AuthRequest(
            auth_server.clients["first_party"], scope=FIRST_PARTY_SCOPE), user)
    finally:
        agent.close()
    app_token = post_form(auth_server, "/token", partner_app,
                          {"grant_type": "client_credentials"}).json()["access_token"]

    async with running(create_app(registry_settings(settings, auth_server))) as registry:
        me = {"Authorization": f"Bearer {mine['access_token']}"}
        listed = await registry.get("/v1/me/connections", headers=me)
        assert listed.status_code == 200, listed.text
        [connection] = listed.json()["data"]
        assert connection["app"]["client_id"] == partner_app.client_id
        as_app = await registry.get("/v1/app/connections",
                                    headers={"Authorization": f"Bearer {app_token}"})
        assert [c["id"] for c in as_app.json()["data"]] == [connection["id"]]
        assert user.email not in as_app.text

        theirs = {"Authorization": f"Bearer {partner['access_token']}"}
        # Verified, but the wrong kind of token for this call: 403, not 401.
        assert (await registry.get("/v1/me/connections", headers=theirs)).status_code == 403
        revoked = await registry.delete(f"/v1/me/connections/{connection['id']}", headers=me)
        assert revoked.status_code == 204
        assert (await registry.get("/v1/me/connections", headers=theirs)).status_code == 401

    with auth_server.sessions() as session:
        stored = session.exec(select(Connection).where(
            Connection.user_id == uuid.UUID(user.id))).one()
        assert stored.status == "revoked"
