"""Partner sandboxes end to end over HTTP (issue 17, item 6), on the real auth service
and its database: a partner makes sandboxes with its initial access token or an app's
client credentials (at most five), reads only its own, links its app in one through the
real authorize and consent pages as a sandbox login, syncs its employees, simulates
changes that move the change feed, and deletes it; another partner's app is refused
consent there and another partner's calls answer 404; customer-side routes never see a
sandbox."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import SQLModel, col, select

from services.registry.app import create_app as create_registry
from services.registry.sandboxes import removal
from services.registry.sandboxes import service as sandbox_service
from services.sync.app import create_app as create_sync
from services.sync.events.feed import SETTLE_S
from shared.config import Settings
from shared.db.types import utcnow
from shared.models import (
    AccessReview,
    AccessReviewItem,
    App,
    Connection,
    Employee,
    Environment,
    Event,
    IdempotencyKey,
    Partner,
    User,
)
from shared.passwords import verify_password
from shared.policy.sandboxes import MAX_PER_PARTNER, RESERVED_DOMAIN
from shared.vault import TokenKind, new_token
from tests.fixtures.auth_server import AuthServer, Client, new_client
from tests.fixtures.dpop import DPoPKey
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    exchange,
    post_form,
)
from tests.services.auth.support import (
    User as Login,
)
from tests.services.conftest import running
from tests.services.registry.conftest import bearer
from tests.services.registry.support import fresh_address, registry_settings

DATA_SCOPE = "company.info.read employee.info.read employee.payment.read offline_access"
# The change feed serves events once they are SETTLE_S old: the tests backdate a
# sandbox's events by more than that instead of waiting it out.
BACKDATE = timedelta(seconds=SETTLE_S + 1)


def _partner(server: AuthServer, name: str) -> tuple[str, Client]:
    """A partner with its initial access token and one app (client credentials too)."""
    token = new_token(TokenKind.INITIAL_ACCESS_TOKEN)
    with server.sessions() as session, session.begin():
        partner = Partner(name=name, initial_access_token_digest=server.digest(token))
        session.add(partner)
        session.flush()
        client = new_client(session, server.keyring, name=f"{name} app", partner=partner,
                            scopes=tuple(DATA_SCOPE.split()),
                            grant_types=["authorization_code", "refresh_token",
                                         "client_credentials"])
    return token, client


def _app_token(server: AuthServer, client: Client, scope: str = "sandboxes.manage") -> str:
    response = post_form(server, "/token", client,
                         {"grant_type": "client_credentials", "scope": scope})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _login(sandbox: dict[str, Any], template: str) -> Login:
    user = next(u for u in sandbox["users"] if u["template"] == template)
    return Login(user["id"], user["email"], user["password"], template)


def _empty_sandboxes(server: AuthServer, initial: str, names: list[str]) -> list[str]:
    """Sandboxes of the partner of `initial`, as bare rows (no seeded data): they count
    against its cap like any other; the ids."""
    with server.sessions() as session, session.begin():
        partner = session.exec(select(Partner).where(
            Partner.initial_access_token_digest == server.digest(initial))).one()
        rows = [Environment(name=name, sandbox_partner_id=partner.id) for name in names]
        session.add_all(rows)
        session.flush()
        return [str(row.id) for row in rows]


async def _changes(server: AuthServer, sync: httpx.AsyncClient, sandbox_id: uuid.UUID,
                   token: str, wanted: str) -> list[dict]:
    """The connection's change feed, with an event of type `wanted` in it, once the
    sandbox's events so far are settled: moved into the past by more than the feed's
    settle time (a later event of the sandbox is not yet in the feed)."""
    with server.sessions() as session, session.begin():
        for event in session.exec(select(Event).where(Event.environment_id == sandbox_id)):
            event.created_at -= BACKDATE
    response = await sync.get("/v1/changes", headers=bearer(token))
    assert response.status_code == 200, response.text
    rows = response.json()["data"]
    assert any(row["type"] == wanted for row in rows), rows
    return rows


def _review(server: AuthServer, sandbox: dict[str, Any]) -> None:
    """An open access review of the sandbox's connections, made by its accountant: it
    refers to the environment, the accountant, the connections and their users."""
    environment_id = uuid.UUID(sandbox["id"])
    accountant = uuid.UUID(_login(sandbox, "accountant").id)
    with server.sessions() as session, session.begin():
        review = AccessReview(environment_id=environment_id, name="Sandbox review",
                              reviewer="accountant", default_decision="revoke",
                              due_at=utcnow() + timedelta(days=7), created_by=accountant)
        session.add(review)
        session.flush()
        links = session.exec(select(Connection).where(
            Connection.environment_id == environment_id)).all()
        assert links
        session.add_all([AccessReviewItem(review_id=review.id, environment_id=environment_id,
                                          connection_id=c.id, user_id=c.user_id,
                                          app_id=c.app_id) for c in links])


def test_the_removal_deletes_every_table_that_refers_to_a_sandbox() -> None:
    """A table that refers to an environment, its logins or its connections keeps the
    sandbox from being deleted (every foreign key is checked) unless the removal deletes
    its rows: a new table must join the removal's list."""
    held = {"environments", "users", "connections"}
    referring = {table.name for table in SQLModel.metadata.sorted_tables
                 if table.name not in held and any(
                     fk.column.table.name in held for fk in table.foreign_keys)}
    # A sandbox has no first-party apps of its own: sandboxes/service.py makes none.
    referring -= {"apps"}
    deleted = {statement.table.name for statement in removal.deletions(uuid.uuid4())}
    assert referring - deleted == set()
    assert held - {"environments"} <= deleted


async def test_a_partner_tries_its_app_in_a_sandbox(settings: Settings,
                                                    auth_server: AuthServer) -> None:
    initial, client = _partner(auth_server, "Sandbox Partner")
    other_initial, other_client = _partner(auth_server, "Other Partner")
    app_token = _app_token(auth_server, client)
    configured = registry_settings(settings, auth_server)
    async with running(create_registry(configured)) as registry, \
            running(create_sync(configured)) as sync:
        # Created with the initial access token: 201, passwords once, marked sandbox.
        created = await registry.post("/v1/sandboxes", json={"name": "Try-out"},
                                      headers={**bearer(initial), "Idempotency-Key": "sb-1"})
        assert created.status_code == 201, created.text
        sandbox = created.json()
        sandbox_id = uuid.UUID(sandbox["id"])
        assert sandbox["sandbox"] is True and sandbox["name"] == "Try-out"
        assert {u["template"] for u in sandbox["users"]} == {
            "accountant", "master_client", "company", "hr_manager", "payroll_hr_manager",
            "employee"}
        assert all(len(u["password"]) >= 16 and u["email"].endswith("." + RESERVED_DOMAIN)
                   for u in sandbox["users"])
        assert len(sandbox["debtors"]) == 2 and sandbox["employee_count"] == 20
        with auth_server.sessions() as session:
            environment = session.get(Environment, sandbox_id)
            assert environment is not None and environment.sandbox
            stored = session.exec(select(IdempotencyKey)).all()
            # The answer with the passwords is kept sealed, never in the clear.
            assert stored and all(u["password"].encode() not in row.answer_ciphertext
                                  for row in stored for u in sandbox["users"])
        replay = await registry.post("/v1/sandboxes", json={"name": "Try-out"},
                                     headers={**bearer(initial), "Idempotency-Key": "sb-1"})
        assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
        assert replay.json()["id"] == sandbox["id"]

        # Three more (bare rows: seeding them over HTTP tests nothing new) and the fifth
        # with the app's client credentials; the sixth is refused.
        _empty_sandboxes(auth_server, initial, [f"More {n}" for n in range(3)])
        more = await registry.post("/v1/sandboxes", json={"name": "More 3"},
                                   headers=bearer(app_token))
        assert more.status_code == 201, more.text
        sixth = await registry.post("/v1/sandboxes", json={"name": "Sixth"},
                                    headers=bearer(app_token))
        assert sixth.status_code == 409, sixth.text
        assert sixth.headers["content-type"].startswith("application/problem+json")

        # The partner lists and reads its own (no passwords); another partner sees none.
        listed = await registry.get("/v1/sandboxes", headers=bearer(initial))
        assert listed.status_code == 200
        assert [s["name"] for s in listed.json()["data"]] == [
            "Try-out", "More 0", "More 1", "More 2", "More 3"]
        assert "password" not in listed.text
        read = await registry.get(f"/v1/sandboxes/{sandbox_id}", headers=bearer(app_token))
        assert read.status_code == 200 and read.json()["users"][0]["email"]
        assert "password" not in read.text
        etag = read.headers["etag"]
        other_app_token = _app_token(auth_server, other_client)
        for headers in (bearer(other_initial), bearer(other_app_token)):
            assert (await registry.get("/v1/sandboxes", headers=headers)).json()["data"] == []
            assert (await registry.get(f"/v1/sandboxes/{sandbox_id}",
                                       headers=headers)).status_code == 404
            assert (await registry.post(f"/v1/sandboxes/{sandbox_id}/simulate", json={},
                                        headers=headers)).status_code == 404
            assert (await registry.delete(f"/v1/sandboxes/{sandbox_id}",
                                          headers=headers)).status_code == 404
        # A token without the scope, or no credential at all, is refused.
        webhooks_only = _app_token(auth_server, client, "webhooks.manage")
        assert (await registry.get("/v1/sandboxes",
                                   headers=bearer(webhooks_only))).status_code == 403
        assert (await registry.get("/v1/sandboxes")).status_code == 401
        assert (await registry.get("/v1/sandboxes", headers=bearer(
            new_token(TokenKind.INITIAL_ACCESS_TOKEN)))).status_code == 401

        # A sandbox login links the partner's app through the real pages...
        master = _login(sandbox, "master_client")
        agent = Browser(auth_server, fresh_address())
        try:
            # The consent page says it is a sandbox (a customer's never does).
            request = AuthRequest(client, scope=DATA_SCOPE)
            page = agent.follow(agent.login(agent.follow(agent.authorize(request)), master))
            assert page.status_code == 200 and "data-sandbox" in page.text, page.text[:300]
            linked = agent.walk(agent.submit(page, decision="allow"), request.target)
            tokens = exchange(auth_server, request, linked.params["code"]).json()
            # ...while another partner's app is refused consent in the sandbox.
            refused = agent.link(AuthRequest(other_client, scope=DATA_SCOPE), master)
            assert refused.params["error"] == "access_denied", refused.location
            assert "consent" not in refused.pages
        finally:
            agent.close()
        with auth_server.sessions() as session:
            links = session.exec(select(Connection).where(
                Connection.environment_id == sandbox_id)).all()
            mine = session.exec(select(App.id).where(App.client_id == client.client_id)).one()
            assert [c.app_id for c in links] == [mine]
        connection = bearer(tokens["access_token"])
        # The partner's view marks the connection as a sandbox's.
        views = (await registry.get("/v1/app/connections", headers=bearer(
            _app_token(auth_server, client, "webhooks.manage")))).json()["data"]
        assert [(v["environment_id"], v["sandbox"]) for v in views] == [(str(sandbox_id), True)]
        company_id = sandbox["debtors"][0]["companies"][0]["id"]
        employees = await sync.get(f"/v1/companies/{company_id}/employees", headers=connection)
        assert employees.status_code == 200, employees.text
        assert len(employees.json()["data"]) == 5
        assert all(e["email"].endswith(RESERVED_DOMAIN) for e in employees.json()["data"])

        # Simulate a new hire: the event is written and the change feed moves.
        before = await _changes(auth_server, sync, sandbox_id, tokens["access_token"],
                                "connection.created")
        hired = await registry.post(f"/v1/sandboxes/{sandbox_id}/simulate",
                                    json={"kind": "new_hire", "company_id": company_id},
                                    headers=bearer(app_token))
        assert hired.status_code == 200, hired.text
        assert hired.json()["events"] == ["employee.created", "employee.payment.changed"]
        employee_id = hired.json()["ids"]["employee_id"]
        with auth_server.sessions() as session:
            written = session.exec(select(Event).where(
                Event.environment_id == sandbox_id,
                col(Event.type).in_(["employee.created", "employee.payment.changed"]))).all()
            assert {e.data["employee_id"] for e in written} == {employee_id}
        after = await _changes(auth_server, sync, sandbox_id, tokens["access_token"],
                               "employee.created")
        created_events = [row for row in after if row["type"] == "employee.created"]
        assert [row["data"]["employee_id"] for row in created_events] == [employee_id]
        assert len(after) > len(before)
        # A random change and the other kinds work too.
        for kind in ("salary_change", "payroll_run_finalized", "absence", None):
            body = {"kind": kind} if kind else None
            changed = await registry.post(f"/v1/sandboxes/{sandbox_id}/simulate", json=body,
                                          headers=bearer(initial))
            assert changed.status_code == 200, changed.text
            assert changed.json()["events"]
        for body in ({"kind": "earthquake"},
                     {"kind": "absence", "company_id": str(uuid.uuid4())}):
            refused_change = await registry.post(f"/v1/sandboxes/{sandbox_id}/simulate",
                                                 json=body, headers=bearer(initial))
            assert refused_change.status_code == 422, refused_change.text

        # Deleted: 204, gone with its connection (and the access review of it), and the
        # connection's token stops (not with the ETag read before the simulated
        # changes: 412).
        _review(auth_server, sandbox)
        stale = await registry.delete(f"/v1/sandboxes/{sandbox_id}",
                                      headers={**bearer(app_token), "If-Match": etag})
        assert stale.status_code == 412, stale.text
        deleted = await registry.delete(f"/v1/sandboxes/{sandbox_id}",
                                        headers=bearer(app_token))
        assert deleted.status_code == 204, deleted.text
        assert (await registry.get(f"/v1/sandboxes/{sandbox_id}",
                                   headers=bearer(app_token))).status_code == 404
        assert (await sync.get(f"/v1/companies/{company_id}/employees",
                               headers=connection)).status_code == 401
        with auth_server.sessions() as session:
            assert session.get(Environment, sandbox_id) is None
            for model in (Connection, Employee, User, Event, AccessReview, AccessReviewItem):
                assert not session.exec(select(model).where(
                    model.environment_id == sandbox_id)).all()
        left = await registry.get("/v1/sandboxes", headers=bearer(initial))
        assert len(left.json()["data"]) == 4
        for row in left.json()["data"]:
            gone = await registry.delete(f"/v1/sandboxes/{row['id']}", headers=bearer(initial))
            assert gone.status_code == 204


async def test_customer_side_routes_never_see_a_sandbox(settings: Settings,
                                                       auth_server: AuthServer) -> None:
    """The SaaS's provisioning (its platform-wide app) does not reach a sandbox, and no
    customer's user gets an address on the reserved domain."""
    initial, _ = _partner(auth_server, "Hidden Partner")
    with auth_server.sessions() as session, session.begin():
        platform = new_client(session, auth_server.keyring, first_party=True, platform=True,
                              scopes=("directory.manage",),
                              grant_types=["client_credentials"])
        customer = session.exec(select(Environment).where(
            col(Environment.sandbox_partner_id).is_(None))).first()
        assert customer is not None
        customer_id = customer.id
    provisioner = bearer(_app_token(auth_server, platform, "directory.manage"))
    async with running(create_registry(registry_settings(settings, auth_server))) as registry:
        sandbox = (await registry.post("/v1/sandboxes", json={"name": "Hidden"},
                                       headers=bearer(initial))).json()
        debtor = sandbox["debtors"][0]
        company = debtor["companies"][0]
        user = sandbox["users"][0]
        try:
            for path in (f"/v1/directory/environments/{sandbox['id']}",
                         f"/v1/directory/environments/{sandbox['id']}/users",
                         f"/v1/directory/debtors/{debtor['id']}",
                         f"/v1/directory/companies/{company['id']}",
                         f"/v1/directory/users/{user['id']}"):
                response = await registry.get(path, headers=provisioner)
                assert response.status_code == 404, (path, response.text)
            patched = await registry.patch(f"/v1/directory/users/{user['id']}",
                                           json={"active": False}, headers=provisioner)
            assert patched.status_code == 404
            made = await registry.post(f"/v1/directory/environments/{sandbox['id']}/users",
                                       json={"email": "x@example.test", "name": "X",
                                             "template": "accountant"}, headers=provisioner)
            assert made.status_code == 404
            # Spellings that fold to the reserved domain (fullwidth and ideographic dots,
            # with one ASCII dot so the address's pattern holds) and invisible characters.
            for email, why in ((f"boss@{RESERVED_DOMAIN}", "reserved"),
                               (f"boss@abc.{RESERVED_DOMAIN.upper()}", "reserved"),
                               ("boss@x.sandbox\uff0ekoppel\uff0einvalid", "reserved"),
                               ("boss@sandbox\u3002koppel.invalid", "reserved"),
                               ("boss@ABC.sandbox\uff0eKOPPEL.invalid\uff0e", "reserved"),
                               (f"boss@{RESERVED_DOMAIN}\u200b", "format characters"),
                               (f"boss@x.{RESERVED_DOMAIN}\ufeff", "format characters")):
                refused = await registry.post(
                    f"/v1/directory/environments/{customer_id}/users",
                    json={"email": email, "name": "Boss", "template": "accountant"},
                    headers=provisioner)
                assert refused.status_code == 422, (email, refused.text)
                assert why in refused.text, (email, refused.text)
            fine = await registry.get(f"/v1/directory/environments/{customer_id}",
                                      headers=provisioner)
            assert fine.status_code == 200
        finally:
            await registry.delete(f"/v1/sandboxes/{sandbox['id']}", headers=bearer(initial))


async def test_a_dpop_bound_app_token_needs_its_proof_on_the_sandbox_routes(
    settings: Settings, auth_server: AuthServer,
) -> None:
    """The partner's own operations go through the same authentication as every route:
    a DPoP-bound token sent as Bearer, or under DPoP without a proof, is refused (SECURITY
    42; found by review: these routes once verified the token alone)."""
    _, client = _partner(auth_server, "DPoP Sandbox Partner")
    key = DPoPKey("ES256")
    issued = post_form(auth_server, "/token", client,
                       {"grant_type": "client_credentials", "scope": "sandboxes.manage"},
                       headers={"DPoP": key.proof("POST", f"{auth_server.url}/token")})
    assert issued.status_code == 200 and issued.json()["token_type"] == "DPoP", issued.text
    token = issued.json()["access_token"]
    configured = registry_settings(settings, auth_server)
    url = f"{configured.registry_url}/v1/sandboxes"
    async with running(create_registry(configured)) as registry:
        for headers in (bearer(token), {"Authorization": f"DPoP {token}"}):
            listed = await registry.get("/v1/sandboxes", headers=headers)
            assert listed.status_code == 401, listed.text
            made = await registry.post("/v1/sandboxes", json={"name": "Nope"}, headers=headers)
            assert made.status_code == 401, made.text
        proved = await registry.get("/v1/sandboxes", headers={
            "Authorization": f"DPoP {token}", "DPoP": key.proof("GET", url, access_token=token)})
        assert proved.status_code == 200, proved.text


async def test_sandbox_logins_never_take_over_another_environments(
        settings: Settings, auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each sandbox's logins lie on a domain of its whole id; a sandbox whose generated
    emails are already another environment's users (the collision a shortened id made
    possible) is refused with 409, writes nothing and leaves those users as they were."""
    initial, _ = _partner(auth_server, "Colliding Partner")
    async with running(create_registry(registry_settings(settings, auth_server))) as registry:
        first = (await registry.post("/v1/sandboxes", json={"name": "A"},
                                     headers=bearer(initial))).json()
        second = (await registry.post("/v1/sandboxes", json={"name": "B"},
                                      headers=bearer(initial))).json()
        try:
            domains = [{u["email"].partition("@")[2] for u in s["users"]}
                       for s in (first, second)]
            assert domains == [{f"{uuid.UUID(s['id']).hex}.{RESERVED_DOMAIN}"}
                               for s in (first, second)]
            taken = domains[0].pop()
            with auth_server.sessions() as session:
                before = {u.email: (u.environment_id, u.password_hash, u.debtor_id,
                                    u.employee_id, u.updated_at)
                          for u in session.exec(select(User)).all()}
                environments = session.exec(select(Environment.id)).all()
            monkeypatch.setattr(sandbox_service, "sandbox_domain", lambda _id: taken)
            refused = await registry.post("/v1/sandboxes", json={"name": "C"},
                                          headers=bearer(initial))
            assert refused.status_code == 409, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert "another environment" in refused.json()["detail"]
            with auth_server.sessions() as session:
                assert {u.email: (u.environment_id, u.password_hash, u.debtor_id,
                                  u.employee_id, u.updated_at)
                        for u in session.exec(select(User)).all()} == before
                assert sorted(session.exec(select(Environment.id)).all()) == sorted(environments)
            for user in first["users"]:  # A's logins keep the passwords A was given
                with auth_server.sessions() as session:
                    stored = session.get(User, uuid.UUID(user["id"]))
                    assert stored is not None and verify_password(stored.password_hash,
                                                                  user["password"])
        finally:
            for sandbox in (first, second):
                await registry.delete(f"/v1/sandboxes/{sandbox['id']}", headers=bearer(initial))


async def test_concurrent_creates_at_the_cap_admit_exactly_one(
        settings: Settings, auth_server: AuthServer) -> None:
    """With four sandboxes, several creates at once: the count and the insert are one
    serialised step (PostgreSQL: the partner's row lock; SQLite: BEGIN IMMEDIATE), so
    exactly one takes the fifth place and the others answer 409."""
    initial, _ = _partner(auth_server, "Racing Partner")
    async with running(create_registry(registry_settings(settings, auth_server))) as registry:
        # The first four as bare rows: the cap counts rows, not what is seeded in them.
        made = _empty_sandboxes(auth_server, initial,
                                [f"S{n}" for n in range(MAX_PER_PARTNER - 1)])
        try:
            racing = await asyncio.gather(*(
                registry.post("/v1/sandboxes", json={"name": f"R{n}"}, headers=bearer(initial))
                for n in range(3)))
            assert sorted(r.status_code for r in racing) == [201, 409, 409], \
                [r.text for r in racing]
            made += [r.json()["id"] for r in racing if r.status_code == 201]
            listed = (await registry.get("/v1/sandboxes", headers=bearer(initial))).json()
            assert len(listed["data"]) == MAX_PER_PARTNER
        finally:
            for sandbox_id in made:
                await registry.delete(f"/v1/sandboxes/{sandbox_id}", headers=bearer(initial))


async def test_creations_per_hour_are_limited(settings: Settings, auth_server: AuthServer
                                              ) -> None:
    """Past `sandbox_creations_per_hour` a create answers 429 with `Retry-After` and
    makes nothing (creating and deleting in a loop cannot take the registry's CPU)."""
    initial, _ = _partner(auth_server, "Hasty Partner")
    limited = registry_settings(settings, auth_server).model_copy(
        update={"sandbox_creations_per_hour": 1})
    async with running(create_registry(limited)) as registry:
        first = await registry.post("/v1/sandboxes", json={"name": "One"},
                                    headers=bearer(initial))
        assert first.status_code == 201, first.text
        await registry.delete(f"/v1/sandboxes/{first.json()['id']}", headers=bearer(initial))
        again = await registry.post("/v1/sandboxes", json={"name": "Two"},
                                    headers=bearer(initial))
        assert again.status_code == 429, again.text
        assert 0 < int(again.headers["Retry-After"]) <= 3600
        listed = await registry.get("/v1/sandboxes", headers=bearer(initial))
        assert listed.json()["data"] == []
