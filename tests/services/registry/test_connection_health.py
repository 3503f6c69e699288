"""Health flags (issue 19 item 5): each connection in Manage apps (`/v1/me/connections`),
the overview (`/v1/environment/connections`) and its CSV carries the flags a person can
act on, computed in one place (services/registry/connections/health.py), read here
over HTTP: expiring soon (the notice window, KOPPEL_CONSENT_EXPIRY_NOTICE_DAYS), unused
for 90 days, the user deactivated, the app suspended or blocked by this environment, a
webhook endpoint of the app disabled; none for a revoked connection."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

import httpx
from sqlalchemy import event

from services.registry.app import create_app
from services.registry.connections import health
from shared.db.types import utcnow
from shared.models import (
    App,
    AppState,
    AppStatus,
    ConnectionStatus,
    EnvironmentAppPolicy,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from shared.models import UserTemplate as T
from shared.runtime import Runtime
from tests.fixtures import factories as f
from tests.services.conftest import running
from tests.services.registry.conftest import World, bearer


def _endpoint(app: App, status: WebhookEndpointStatus) -> WebhookEndpoint:
    return WebhookEndpoint(app_id=app.id, url="https://hooks.example/x", events=["*"],
                           status=status, secret_ciphertext=b"sealed", secret_key_id="k1")


def _scene(world: World) -> dict[str, list[str]]:
    """Connections of environment A, each set up for one flag (or none): id -> the
    flags expected."""
    now, tenant = utcnow(), world.a
    expected: dict[uuid.UUID, list[str]] = {}
    with world.sessions() as session:
        user = session.merge(tenant.users["master_client"])
        gone = f.make_user(session, tenant.environment, template=T.MASTER_CLIENT,
                           debtor=tenant.debtors[0], active=False)
        suspended, suspended_too, blocked, hooked, fine_hooks = (
            f.make_app(session, name=n) for n in ("Suspended", "Suspended Too", "Blocked",
                                                  "Hooked", "Fine Hooks"))
        suspended.status = suspended_too.status = AppStatus.SUSPENDED
        session.add(EnvironmentAppPolicy(environment_id=tenant.environment.id,
                                         app_id=blocked.id, state="blocked"))
        session.add_all([_endpoint(hooked, WebhookEndpointStatus.ACTIVE),
                         _endpoint(hooked, WebhookEndpointStatus.DISABLED),
                         _endpoint(fine_hooks, WebhookEndpointStatus.ACTIVE)])

        def connect(app: App | None, flags: list[str], who=user, **fields) -> None:
            """One connection (one per user, app and debtor: a healthy app of its own
            when `app` is None)."""
            app = app or f.make_app(session, name="Healthy")
            connection = f.make_connection(session, who, app, **{"last_used_at": now,
                                                                **fields})
            expected[connection.id] = flags

        healthy = None
        connect(healthy, [])
        connect(healthy, ["expiring_soon"], expires_at=now + timedelta(days=3))
        connect(healthy, [], expires_at=now + timedelta(days=30))
        connect(healthy, [], expires_at=now - timedelta(days=1),
                status=ConnectionStatus.EXPIRED)  # expired: no longer "soon"
        connect(healthy, ["unused_90_days"], last_used_at=now - timedelta(days=91))
        # Granted 100 days ago and never used: its scopes are unused too.
        connect(healthy, ["unused_90_days", "unused_scopes"], last_used_at=None,
                created_at=now - timedelta(days=100))
        connect(healthy, [], last_used_at=None, created_at=now - timedelta(days=10))
        connect(suspended, ["app_suspended"])
        connect(blocked, ["app_blocked"], status=ConnectionStatus.SUSPENDED)
        connect(hooked, ["webhooks_disabled"])
        connect(fine_hooks, [])
        connect(healthy, ["user_deactivated"], who=gone)
        connect(suspended_too, ["expiring_soon", "unused_90_days", "app_suspended"],
                expires_at=now + timedelta(days=1), last_used_at=now - timedelta(days=200))
        connect(hooked, [], who=gone, status=ConnectionStatus.REVOKED, revoked_at=now,
                last_used_at=now - timedelta(days=200))
        # The same blocked app in environment B: blocked only where its policy says so.
        other = f.make_connection(session, session.merge(world.b.users["master_client"]),
                                  blocked, last_used_at=now)
        session.commit()
        expected_b = {str(other.id): []}
    return {str(k): v for k, v in expected.items()} | {"b": list(expected_b)}


async def _overview(client: httpx.AsyncClient, world: World, tenant=None) -> dict[str, list]:
    user = (tenant or world.a).users["accountant"]
    response = await client.get("/v1/environment/connections", params={"limit": 500},
                                headers=bearer(world.user_token(user)))
    assert response.status_code == 200, response.text
    return {row["id"]: row["flags"] for row in response.json()["data"]}


async def test_every_flag_in_the_overview_manage_apps_and_the_csv(
    client: httpx.AsyncClient, world: World
) -> None:
    expected = _scene(world)
    b_ids = expected.pop("b")

    overview = await _overview(client, world)
    assert {k: overview[k] for k in expected} == expected
    in_b = await _overview(client, world, world.b)
    assert all(in_b[i] == [] for i in b_ids)

    owner = world.a.users["master_client"]
    response = await client.get("/v1/me/connections", params={"limit": 500},
                                headers=bearer(world.user_token(owner)))
    assert response.status_code == 200, response.text
    mine = {row["id"]: row["flags"] for row in response.json()["data"]}
    ours = [k for k in expected if k in mine]
    assert len(ours) == len(expected) - 2  # all but the deactivated user's two
    assert {k: mine[k] for k in ours} == {k: expected[k] for k in ours}
    one = next(k for k, v in expected.items() if v == ["webhooks_disabled"])
    single = await client.get(f"/v1/me/connections/{one}",
                              headers=bearer(world.user_token(owner)))
    assert single.json()["flags"] == ["webhooks_disabled"]

    exported = await client.get("/v1/environment/connections", headers={
        **bearer(world.user_token(world.a.users["accountant"])), "Accept": "text/csv"})
    assert exported.status_code == 200, exported.text
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert list(rows[0])[-1] == "flags"
    by_id = {row["id"]: row["flags"].split() for row in rows}
    # The CSV's cell leaves out `unused_scopes` (its own column-less field; health.py).
    assert {k: by_id[k] for k in expected} == {
        k: [f for f in v if f != "unused_scopes"] for k, v in expected.items()}


async def test_the_partner_view_has_no_flags(client: httpx.AsyncClient, world: World) -> None:
    """Flags are for the customer: the app's own view leaves them out (whether its user
    was deactivated, say, is not the partner's business)."""
    response = await client.get("/v1/app/connections",
                                headers=bearer(world.app_token(world.apps[0])))
    assert response.status_code == 200, response.text
    assert response.json()["data"]
    assert all("flags" not in row for row in response.json()["data"])


async def test_the_notice_window_is_the_setting(world: World) -> None:
    now = utcnow()
    with world.sessions() as session:
        app = f.make_app(session, name="Window")
        connection = f.make_connection(session, session.merge(world.a.users["master_client"]),
                                       app, last_used_at=now,
                                       expires_at=now + timedelta(days=20))
        session.commit()
        ident, scopes = str(connection.id), list(connection.scopes)
    headers = bearer(world.user_token(world.a.users["accountant"]))
    for days, flags in ((14, []), (30, ["expiring_soon"])):
        settings = world.settings.model_copy(update={"consent_expiry_notice_days": days})
        async with running(create_app(settings)) as client:
            response = await client.get("/v1/environment/connections",
                                        params={"app": app.client_id}, headers=headers)
            assert response.status_code == 200, response.text
            [row] = response.json()["data"]
            assert row["id"] == ident and row["flags"] == flags
            exported = await client.get("/v1/environment/connections", params={
                "app": app.client_id}, headers={**headers, "Accept": "text/csv"})
            [line] = list(csv.DictReader(io.StringIO(exported.text)))
            assert line["flags"].split() == flags
            # The row a narrow answers (keeping every scope: nothing changes) and the
            # sample of a dry-run bulk revoke use the same window.
            narrowed = await client.post(f"/v1/environment/connections/{ident}/narrow",
                                         json={"scopes": scopes}, headers=headers)
            assert narrowed.status_code == 200, narrowed.text
            assert narrowed.json()["flags"] == flags
            dry_run = await client.post("/v1/environment/connections/bulk-revoke", json={
                "filter": {"app": app.client_id}, "reason": "window", "dry_run": True},
                headers=headers)
            assert dry_run.status_code == 200, dry_run.text
            assert [row["flags"] for row in dry_run.json()["sample"]] == [flags]


async def test_the_app_flags_are_one_query_from_the_apps_held(world: World,
                                                             runtime: Runtime) -> None:
    """Manage apps, the overview and its CSV hold the App rows already: the suspension
    comes from the status given, and blocked and disabled webhooks are one query for
    any number of apps (the flags in ORDER)."""
    with world.sessions() as session:
        both, blocked_only, fine = (f.make_app(session, name=n)
                                    for n in ("Both", "Blocked Only", "Fine"))
        for app in (both, blocked_only):
            session.add(EnvironmentAppPolicy(environment_id=world.a.environment.id,
                                             app_id=app.id, state=AppState.BLOCKED))
        session.add_all([_endpoint(both, WebhookEndpointStatus.DISABLED),
                         _endpoint(both, WebhookEndpointStatus.DISABLED),
                         _endpoint(fine, WebhookEndpointStatus.ACTIVE)])
        session.commit()
        ids = (both.id, blocked_only.id, fine.id)
    statements: list[str] = []

    @event.listens_for(runtime.async_engine.sync_engine, "before_cursor_execute")
    def _seen(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    async with runtime.async_session() as session:
        found = await health.app_flags(session, world.a.environment.id, {
            ids[0]: AppStatus.SUSPENDED, ids[1]: AppStatus.ACTIVE, ids[2]: AppStatus.ACTIVE})
        in_b = await health.app_flags(session, world.b.environment.id, {
            ids[1]: AppStatus.ACTIVE})
    event.remove(runtime.async_engine.sync_engine, "before_cursor_execute", _seen)
    assert found == {ids[0]: ["app_suspended", "app_blocked", "webhooks_disabled"],
                     ids[1]: ["app_blocked"], ids[2]: []}
    assert in_b == {ids[1]: []}
    flag_queries = [s for s in statements if not s.lstrip().upper().startswith(
        ("BEGIN", "ROLLBACK", "COMMIT"))]
    assert len(flag_queries) == 2, flag_queries  # one per call
    assert all(" apps" not in s for s in flag_queries), flag_queries
