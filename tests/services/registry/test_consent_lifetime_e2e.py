"""Expiry and renewal end to end (issue 19 item 1), with the real auth service: an
accountant sets the consent lifetime, a real consent gets `expires_at`, a policy change
recomputes it (never sooner than 14 days from the change), the worker's job sends
`connection.expiring` once and at expiry turns the connection `expired` (the app's
access token is refused on its next sync call, `connection.expired` is sent), and the
user renews it through the consent page (which says "renew"; prompt=none never renews)
and through the API; 409 when it does not expire or is revoked. Time moves by passing
`now` to the job, never by sleeping."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
from sqlmodel import col, select

from services.registry.app import create_app as create_registry
from services.registry.jobs import run_expiry
from services.sync.app import create_app as create_sync
from shared.config import Settings
from shared.db.types import utcnow
from shared.models import Company, Connection, ConsentReceipt, Event
from shared.runtime import open_runtime
from tests.fixtures.auth_server import AuthServer
from tests.services.auth.support import (
    AuthRequest,
    callback_params,
    exchange,
    oauth_error,
    obtain_tokens,
    refresh,
)
from tests.services.conftest import running
from tests.services.registry.support import (
    DAY,
    PARTNER_SCOPE,
    bearer_of,
    client_credentials,
    consent_scene,
)


def _near(value: str | None, expected: datetime, slack: timedelta = timedelta(minutes=5)) -> bool:
    assert value is not None
    return abs(datetime.fromisoformat(value) - expected) < slack


def _events(server: AuthServer, connection_id: str, type: str) -> int:
    with server.sessions() as session:
        return len(session.exec(select(Event).where(
            Event.connection_id == uuid.UUID(connection_id), Event.type == type)).all())


def _stored(server: AuthServer, connection_id: str) -> Connection:
    with server.sessions() as session:
        row = session.get(Connection, uuid.UUID(connection_id))
        assert row is not None
        return row


async def _connection(registry: httpx.AsyncClient, headers: dict[str, str]) -> dict:
    listed = await registry.get("/v1/me/connections", headers=headers)
    assert listed.status_code == 200, listed.text
    [connection] = listed.json()["data"]
    return connection


async def test_a_connection_expires_and_is_renewed_through_the_page_and_the_api(
    settings: Settings, auth_server: AuthServer,
) -> None:
    with consent_scene(auth_server, settings, "Lifetime Planner") as scene:
        user, partner_app, agent = scene.user, scene.partner_app, scene.agent
        reg, mine, books = scene.reg, scene.mine, scene.books
        async with running(create_registry(reg)) as registry, \
                running(create_sync(reg)) as sync, open_runtime(reg) as runtime:
            # The accountant sets the lifetime: 365 days, 90 for special-category data.
            policy = await registry.put(
                "/v1/environment/policy/consent-lifetime", headers=books,
                json={"consent_lifetime_days": 365,
                      "consent_lifetime_days_by_sensitivity": {"special": 90}})
            assert policy.status_code == 200, policy.text
            assert policy.json() == {"consent_lifetime_days": 365, "updated": 0,
                                     "consent_lifetime_days_by_sensitivity":
                                         {"special_category": 90}}
            shown = (await registry.get("/v1/environment/policy", headers=books)).json()
            assert shown["consent_lifetime_days"] == 365
            assert shown["consent_lifetime_days_by_sensitivity"] == {"special_category": 90}
            audit = (await registry.get("/v1/environment/audit-events", headers=books, params={
                "action": "policy.consent_lifetime_changed"})).json()["data"]
            assert len(audit) == 1

            # A real consent: absence data is special-category, so 90 days.
            request = AuthRequest(partner_app, scope=PARTNER_SCOPE)
            partner = obtain_tokens(auth_server, agent, request, user)
            consented = utcnow()
            connection = await _connection(registry, mine)
            ident = connection["id"]
            assert _near(connection["expires_at"], consented + 90 * DAY)
            app_token = client_credentials(auth_server, partner_app)
            as_app = (await registry.get(f"/v1/app/connections/{ident}",
                                         headers=app_token)).json()
            assert _near(as_app["expires_at"], consented + 90 * DAY)

            # A policy change recomputes it from the consent; an old consent (made 300
            # days ago) gets no less than 14 days from the change.
            changed = await registry.put(
                "/v1/environment/policy/consent-lifetime", headers=books,
                json={"consent_lifetime_days": 60})
            assert changed.json()["updated"] == 1
            connection = await _connection(registry, mine)
            assert _near(connection["expires_at"], consented + 60 * DAY)
            with auth_server.sessions() as session, session.begin():
                row = session.get(Connection, uuid.UUID(ident))
                assert row is not None
                row.created_at = consented - 300 * DAY
            changed_at = utcnow()
            changed = await registry.put(
                "/v1/environment/policy/consent-lifetime", headers=books,
                json={"consent_lifetime_days": 30})
            assert changed.json()["updated"] == 1
            expires = datetime.fromisoformat((await _connection(registry, mine))["expires_at"])
            assert _near(expires.isoformat(), changed_at + 14 * DAY)

            # The token works now (and the status mirror remembers it active).
            assert (await sync.get("/v1/debtors", headers=bearer_of(partner))).status_code == 200

            # The job at notice time: `connection.expiring`, once. The job acts on the
            # whole shared database (other tests' links may expire too): what it did to
            # this connection is asserted, the exact counts in test_consent_lifetime.py.
            notice_time = expires - 13 * DAY
            counts = await run_expiry(runtime.async_session, runtime.redis, 14, notice_time)
            assert counts["expiring"] >= 1
            assert _events(auth_server, ident, "connection.expiring") == 1
            assert _stored(auth_server, ident).status == "active"
            await run_expiry(runtime.async_session, runtime.redis, 14, notice_time + DAY)
            assert _events(auth_server, ident, "connection.expiring") == 1
            assert _events(auth_server, ident, "connection.expired") == 0
            assert (await sync.get("/v1/debtors", headers=bearer_of(partner))).status_code == 200

            # At expiry: expired, the token refused on its next call, the app told.
            counts = await run_expiry(runtime.async_session, runtime.redis, 14,
                                      expires + timedelta(seconds=1))
            assert counts["expired"] >= 1
            assert _events(auth_server, ident, "connection.expiring") == 1
            assert (await _connection(registry, mine))["status"] == "expired"
            assert (await sync.get("/v1/debtors", headers=bearer_of(partner))).status_code == 401
            assert _events(auth_server, ident, "connection.expired") == 1
            refreshed = refresh(auth_server, partner_app, partner["refresh_token"])
            assert oauth_error(refreshed) == "invalid_grant"

            # prompt=none never renews; nor does remembered consent (the page is shown).
            silent = agent.walk(agent.authorize(request, prompt="none"), request.target)
            assert silent.pages == [] and silent.params["error"] == "consent_required"
            assert _stored(auth_server, ident).status == "expired"
            again_request = AuthRequest(partner_app, scope=PARTNER_SCOPE)
            page = agent.follow(agent.authorize(again_request))
            assert page.status_code == 200 and "data-renew" in page.text
            assert "Renew" in page.text
            with auth_server.sessions() as session:
                names = session.exec(select(Company.name).where(
                    col(Company.id).in_([uuid.UUID(c) for c in connection["company_ids"]])
                )).all()
            assert names and all(name in page.text for name in names)
            assert _stored(auth_server, ident).status == "expired"

            # Renewal through the page: the same connection, active, a new expiry.
            renewed_at = utcnow()
            answer = agent.submit(page, decision="allow")
            code = callback_params(answer.headers["location"], request.target)["code"]
            tokens = exchange(auth_server, again_request, code).json()
            connection = await _connection(registry, mine)
            assert connection["id"] == ident and connection["status"] == "active"
            assert _near(connection["expires_at"], renewed_at + 30 * DAY)
            assert _events(auth_server, ident, "connection.renewed") == 1
            assert (await sync.get("/v1/debtors", headers=bearer_of(tokens))).status_code == 200
            # The refresh token refused while expired works again (it was not spent).
            assert refresh(auth_server, partner_app,
                           partner["refresh_token"]).status_code == 200

            # It expires again; renewal through the API.
            again = datetime.fromisoformat(connection["expires_at"])
            await run_expiry(runtime.async_session, runtime.redis, 14, again + DAY)
            assert (await sync.get("/v1/debtors", headers=bearer_of(tokens))).status_code == 401
            renewed_at = utcnow()
            renewed = await registry.post(f"/v1/me/connections/{ident}/renew", headers=mine)
            assert renewed.status_code == 200, renewed.text
            assert renewed.json()["status"] == "active"
            assert _near(renewed.json()["expires_at"], renewed_at + 30 * DAY)
            assert _events(auth_server, ident, "connection.renewed") == 2
            assert (await sync.get("/v1/debtors", headers=bearer_of(tokens))).status_code == 200
            renewals = (await registry.get("/v1/environment/audit-events", headers=books, params={
                "action": "connection.renewed"})).json()["data"]
            assert len(renewals) == 2
            # Each consent act signed a receipt of the connection's chain, saying how.
            with auth_server.sessions() as session:
                made = session.exec(select(ConsentReceipt.act, ConsentReceipt.collection_method)
                                    .where(ConsentReceipt.connection_id == uuid.UUID(ident))
                                    .order_by(col(ConsentReceipt.seq))).all()
            assert [tuple(m) for m in made] == [
                ("granted", "consent_page"), ("expired", "system"), ("renewed", "consent_page"),
                ("expired", "system"), ("renewed", "user")]

            # 409: a connection that does not expire (the lifetime dropped), or revoked.
            await registry.put("/v1/environment/policy/consent-lifetime", headers=books,
                               json={"consent_lifetime_days": None})
            assert (await _connection(registry, mine))["expires_at"] is None
            refused = await registry.post(f"/v1/me/connections/{ident}/renew", headers=mine)
            assert refused.status_code == 409
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert (await registry.delete(f"/v1/me/connections/{ident}",
                                          headers=mine)).status_code == 204
            refused = await registry.post(f"/v1/me/connections/{ident}/renew", headers=mine)
            assert refused.status_code == 409
            # The partner app may not renew; an unknown (or another user's) id is 404.
            assert (await registry.post(f"/v1/me/connections/{ident}/renew",
                                        headers=app_token)).status_code == 403
            assert (await registry.post(f"/v1/me/connections/{uuid.uuid4()}/renew",
                                        headers=mine)).status_code == 404
