"""Least-privilege hints end to end (issue 19 item 4), with the real auth service: a real
consent's sync calls note which consented scope each call needed; after the worker's
flush (the job's function, called directly) Manage apps, the partner's view and the
overview show `scope_usage`, flag `unused_scopes` once the consent is old enough (time
moved in the database row and by `now`, never by sleeping), and the summary names the
scopes no connection used. Narrowing by the user keeps the token working for the kept
scopes and refuses the dropped one (403 insufficient_scope) on its next call, refresh
goes on, the app gets `connection.updated`, and the audit log has it; the accountant's
narrowing that drops `offline_access` ends refresh. Bad bodies 422, revoked 409."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlmodel import select

from services.registry.app import create_app as create_registry
from services.registry.connections.usage import unused_scopes
from services.registry.jobs import flush_scope_uses
from services.sync.app import create_app as create_sync
from shared.config import Settings
from shared.db.types import utcnow
from shared.models import Connection, Event
from shared.runtime import open_runtime
from tests.fixtures.auth_server import AuthServer
from tests.services.auth.support import (
    AuthRequest,
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


def _updated_events(server: AuthServer, connection_id: str) -> list[Event]:
    with server.sessions() as session:
        return list(session.exec(select(Event).where(
            Event.connection_id == uuid.UUID(connection_id),
            Event.type == "connection.updated")).all())


async def test_scope_usage_is_shown_and_narrowing_holds_tokens_to_the_rest(
    settings: Settings, auth_server: AuthServer,
) -> None:
    with consent_scene(auth_server, settings, "Scope Counter") as scene:
        user, partner_app, agent = scene.user, scene.partner_app, scene.agent
        reg, mine, books = scene.reg, scene.mine, scene.books
        async with running(create_registry(reg)) as registry, \
                running(create_sync(reg)) as sync, open_runtime(reg) as runtime:
            partner = obtain_tokens(auth_server, agent,
                                    AuthRequest(partner_app, scope=PARTNER_SCOPE), user)
            token = bearer_of(partner)
            [connection] = (await registry.get("/v1/me/connections", headers=mine)).json()["data"]
            ident = connection["id"]
            assert connection["scope_usage"] == [
                {"scope": s, "last_used_at": None} for s in PARTNER_SCOPE.split()]
            assert connection["unused_scopes"] == []  # granted just now
            assert "unused_scopes" not in connection["flags"]

            # Real sync calls: /v1/debtors needs company.info.read; the flush writes it.
            await runtime.redis.delete("koppel:scopeused:pending")
            before = utcnow()
            assert (await sync.get("/v1/debtors", headers=token)).status_code == 200
            assert await flush_scope_uses(runtime.redis, runtime.async_session) >= 1
            [connection] = (await registry.get("/v1/me/connections", headers=mine)).json()["data"]
            usage = {u["scope"]: u["last_used_at"] for u in connection["scope_usage"]}
            assert usage["employee.absence.read"] is None and usage["offline_access"] is None
            assert usage["company.info.read"] is not None
            assert datetime.fromisoformat(usage["company.info.read"]) >= \
                before - timedelta(seconds=1)

            # A consent 100 days old: the two scopes never needed are flagged everywhere.
            with auth_server.sessions() as session, session.begin():
                row = session.get(Connection, uuid.UUID(ident))
                assert row is not None
                row.created_at = utcnow() - 100 * DAY
            unused = ["employee.absence.read", "offline_access"]
            [connection] = (await registry.get("/v1/me/connections", headers=mine)).json()["data"]
            assert connection["unused_scopes"] == unused
            assert "unused_scopes" in connection["flags"]  # the health flag a person acts on
            app_token = client_credentials(auth_server, partner_app)
            as_app = (await registry.get(f"/v1/app/connections/{ident}", headers=app_token)).json()
            assert as_app["unused_scopes"] == unused
            assert {u["scope"] for u in as_app["scope_usage"]} == set(PARTNER_SCOPE.split())
            overview = (await registry.get("/v1/environment/connections", headers=books)).json()
            [row_out] = [r for r in overview["data"] if r["id"] == ident]
            assert row_out["unused_scopes"] == unused
            assert "unused_scopes" in row_out["flags"]
            summary = (await registry.get("/v1/environment/connections/summary",
                                          headers=books)).json()["data"]
            [mine_summary] = [s for s in summary if s["app"]["client_id"] == partner_app.client_id]
            assert mine_summary["never_used_scopes"] == unused
            # 91 days after the last use of company.info.read, it is unused too.
            with auth_server.sessions() as session:
                stored = session.get(Connection, uuid.UUID(ident))
                assert stored is not None
                assert unused_scopes(stored, utcnow() + 91 * DAY) == PARTNER_SCOPE.split()

            # Narrowing: bad bodies change nothing.
            url = f"/v1/me/connections/{ident}/narrow"
            for body in ({"scopes": []}, {"scopes": ["employees"]}, {}):
                answer = await registry.post(url, headers=mine, json=body)
                assert answer.status_code == 422, answer.text
            assert _updated_events(auth_server, ident) == []
            absences = f"/v1/employees/{uuid.uuid4()}/absences"
            assert (await sync.get(absences, headers=token)).status_code == 404  # allowed

            # The user keeps company.info.read and offline_access.
            narrowed = await registry.post(url, headers=mine, json={
                "scopes": ["company.info.read", "offline_access"]})
            assert narrowed.status_code == 200, narrowed.text
            assert narrowed.json()["scopes"] == ["company.info.read", "offline_access"]
            refused = await sync.get(absences, headers=token)
            assert refused.status_code == 403
            assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
            assert (await sync.get("/v1/debtors", headers=token)).status_code == 200
            [event] = _updated_events(auth_server, ident)
            assert event.data["changed_fields"] == ["scopes"]
            audit = (await registry.get("/v1/environment/audit-events", headers=books, params={
                "action": "connection.scopes_narrowed"})).json()["data"]
            assert len(audit) == 1
            refreshed = refresh(auth_server, partner_app, partner["refresh_token"])
            assert refreshed.status_code == 200, refreshed.text
            again = bearer_of(refreshed.json())
            assert (await sync.get("/v1/debtors", headers=again)).status_code == 200
            assert (await sync.get(absences, headers=again)).status_code == 403

            # The accountant drops offline_access: refresh ends, the kept scope still works.
            env_url = f"/v1/environment/connections/{ident}/narrow"
            dropped = await registry.post(env_url, headers=books,
                                          json={"scopes": ["company.info.read"]})
            assert dropped.status_code == 200, dropped.text
            assert dropped.json()["scopes"] == ["company.info.read"]
            assert len(_updated_events(auth_server, ident)) == 2
            assert oauth_error(refresh(auth_server, partner_app,
                                       refreshed.json()["refresh_token"])) == "invalid_grant"

            # A revoked connection: 409.
            assert (await registry.delete(f"/v1/me/connections/{ident}",
                                          headers=mine)).status_code == 204
            gone = await registry.post(url, headers=mine, json={"scopes": ["company.info.read"]})
            assert gone.status_code == 409, gone.text
            gone = await registry.post(env_url, headers=books,
                                       json={"scopes": ["company.info.read"]})
            assert gone.status_code == 409, gone.text

