"""A new password or a deactivation ends what the user was logged in to (SECURITY.md
line 37), through the directory API or the command line, end to end with the real auth
service: the browser's login session is gone, the first-party refresh token gives
invalid_grant and its access token is refused by the registry and sync on the next
call. A partner app's connection survives a password change (a deactivation suspends
it, as before)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from sqlmodel import select

from services.registry.app import create_app as create_registry
from services.sync.app import create_app as create_sync
from shared.config import Settings
from shared.models import Connection, TokenFamily, UserCompany, UserTemplate
from shared.sessions import session_key
from tests.cli.conftest import Invoke, cli_env, invoke  # noqa: F401 - fixtures
from tests.fixtures.auth_server import AuthServer, new_client
from tests.services.auth.conftest import Tree, create_user
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    oauth_error,
    obtain_tokens,
    post_form,
    refresh,
)
from tests.services.conftest import running

NEW_PASSWORD = "a brand new long password"
FIRST_PARTY_SCOPE = "openid offline_access connections.read company.info.read"


@dataclass
class Services:
    registry: httpx.AsyncClient
    sync: httpx.AsyncClient


@asynccontextmanager
async def _services(settings: Settings, server: AuthServer) -> AsyncIterator[Services]:
    """Registry and sync in process, on the auth service's database and Redis."""
    shared = settings.model_copy(update={
        "database_url": server.engine.url.render_as_string(hide_password=False),
        "redis_url": server.redis_url, "issuer": server.url,
    })
    async with AsyncExitStack() as stack:
        registry = await stack.enter_async_context(running(create_registry(shared)))
        sync = await stack.enter_async_context(running(create_sync(shared)))
        yield Services(registry, sync)


async def _status(services: Services, token: str) -> tuple[int, int]:
    """What the registry and sync answer to the token (Manage apps, the companies)."""
    headers = {"Authorization": f"Bearer {token}"}
    registry = await services.registry.get("/v1/me/connections", headers=headers)
    sync = await services.sync.get("/v1/companies", headers=headers)
    return registry.status_code, sync.status_code


def _provisioner_token(server: AuthServer) -> str:
    """A token of the demo's own frontend (bound to the user's environment) for the
    directory API."""
    token = post_form(server, "/token", server.clients["first_party"],
                      {"grant_type": "client_credentials", "scope": "directory.manage"})
    assert token.status_code == 200, token.text
    return token.json()["access_token"]


def _as_seeded(server: AuthServer, user_id: str, company_ids: list[str]) -> None:
    """Give a master client the company rows that `koppel demo seed` gives its own (the
    directory itself never writes them: a master client reaches its debtor's companies)."""
    with server.sessions() as session, session.begin():
        for company_id in company_ids:
            session.add(UserCompany(user_id=uuid.UUID(user_id),
                                    company_id=uuid.UUID(company_id)))


@pytest.mark.parametrize("seeded", [False, True], ids=["directory_made", "seeded"])
@pytest.mark.parametrize("change", ["password", "deactivate"])
@pytest.mark.parametrize("via", ["api", "cli"])
async def test_line37_a_new_password_or_deactivation_signs_the_user_out(
    settings: Settings, auth_server: AuthServer, invoke: Invoke,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch, change: str, via: str, seeded: bool,
) -> None:
    """Also for a master client shaped as `koppel demo seed` leaves it, with company rows
    (issue 14, finding 11: every PATCH of it answered 422)."""
    demo = auth_server.demo
    tree = Tree(demo["environment"]["id"],
                [(d["id"], [c["id"] for c in d["companies"]]) for d in demo["debtors"]])
    user = create_user(auth_server, tree, UserTemplate.MASTER_CLIENT)
    if seeded:
        _as_seeded(auth_server, user.id, tree.debtors[0][1])
    with auth_server.sessions() as session, session.begin():
        partner_app = new_client(session, auth_server.keyring, name="Sign-out Planner")
    first_party = auth_server.clients["first_party"]
    agent = Browser(auth_server, f"127.88.{uuid.uuid4().int % 250}.1")
    try:
        partner = obtain_tokens(auth_server, agent, AuthRequest(
            partner_app, scope="company.info.read offline_access"), user)
        mine = obtain_tokens(auth_server, agent,
                             AuthRequest(first_party, scope=FIRST_PARTY_SCOPE), user)
        cookie = agent.http.cookies["koppel_session"]
        store = redis.Redis.from_url(auth_server.redis_url)
        try:
            assert store.exists(session_key(auth_server.keyring.digest_key, cookie)) == 1
            async with _services(settings, auth_server) as services:
                assert await _status(services, mine["access_token"]) == (200, 200)
                assert (await _status(services, partner["access_token"]))[1] == 200

                if via == "api":
                    token = _provisioner_token(auth_server)
                    body = ({"password": NEW_PASSWORD} if change == "password"
                            else {"active": False})
                    changed = await services.registry.patch(
                        f"/v1/directory/users/{user.id}", json=body,
                        headers={"Authorization": f"Bearer {token}"})
                    assert changed.status_code == 200, changed.text
                    counts = changed.json()["connections"]
                    assert counts["suspended"] == (1 if change == "deactivate" else 0), counts
                else:
                    monkeypatch.setenv("KOPPEL_DATABASE_URL",
                                       auth_server.engine.url.render_as_string(
                                           hide_password=False))
                    monkeypatch.setenv("KOPPEL_REDIS_URL", auth_server.redis_url)
                    args = (["--password-stdin"] if change == "password" else ["--inactive"])
                    result = await asyncio.to_thread(
                        invoke, "directory", "user", "set", user.email, *args,
                        input=f"{NEW_PASSWORD}\n")
                    assert result.exit_code == 0, result.output

                # The very next call with the first-party access token is refused.
                assert await _status(services, mine["access_token"]) == (401, 401)
                partner_now = (await _status(services, partner["access_token"]))[1]
                assert partner_now == (200 if change == "password" else 401)
            # The browser's session is gone: authorizing asks for a login again.
            assert store.exists(session_key(auth_server.keyring.digest_key, cookie)) == 0
        finally:
            store.close()
        again = agent.authorize(AuthRequest(first_party, scope="openid"))
        assert again.status_code == 303
        assert urlsplit(again.headers["location"]).path == "/login"
    finally:
        agent.close()

    stale = refresh(auth_server, first_party, mine["refresh_token"])
    assert stale.status_code == 400 and oauth_error(stale) == "invalid_grant"
    partner_refresh = refresh(auth_server, partner_app, partner["refresh_token"])
    with auth_server.sessions() as session:
        families = session.exec(select(TokenFamily).where(
            TokenFamily.user_id == uuid.UUID(user.id))).all()
        connection = session.exec(select(Connection).where(
            Connection.user_id == uuid.UUID(user.id))).one()
    first_party_families = [f for f in families if f.connection_id is None]
    assert first_party_families and all(f.revoked_at is not None for f in first_party_families)
    if change == "password":
        # Third-party connections are not the password's business.
        assert partner_refresh.status_code == 200, partner_refresh.text
        assert connection.status == "active"
    else:
        assert partner_refresh.status_code == 400
        assert connection.status == "suspended"
