"""Approval requests end to end (issue 19 item 3), with the real auth service, a real
browser flow and real consents: a user who may not consent to an app asks for it on the
approval page, the request is approved through the registry's API, and the app's next
authorization request completes without any page (its token reads the data API); a
request for an `approval_required` app denied with a reason; 409 for deciding a request
twice or after its 30 days; 404 for a decider out of reach and for another environment;
the approved connection suspended when its user's template may no longer request, and
resumed when it may again; every step in the audit log."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlmodel import select

from services.registry.app import create_app as create_registry
from services.sync.app import create_app as create_sync
from shared.config import Settings
from shared.db.types import utcnow
from shared.models import Connection, ConsentRequest, Environment, Event, UserTemplate
from tests.fixtures.auth_server import APP_SCOPES, AuthServer, new_client
from tests.services.auth.conftest import create_user
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    User,
    callback_params,
    exchange,
    form_to,
    obtain_tokens,
    parse_page,
)
from tests.services.conftest import running
from tests.services.registry.support import (
    FRONTEND_SCOPES,
    bearer_of,
    fresh_address,
    new_tree,
    registry_settings,
)

PARTNER_SCOPE = "company.info.read offline_access"
USER_SCOPE = "openid connections.read connections.manage"
BOOKS_SCOPE = "openid environment.connections.read environment.connections.manage"
REQUESTS = "/v1/environment/consent-requests"
MINE = "/v1/me/consent-requests"
POLICY = "/v1/environment/policy"


class Setup:
    """An environment with an HR manager (both companies), a master client, a company
    login (the first company only) and an accountant; two partner apps; a first-party
    frontend and each user's token for it."""

    def __init__(self, server: AuthServer) -> None:
        self.server = server
        self.tree = new_tree(server)
        self.hr = create_user(server, self.tree, UserTemplate.HR_MANAGER, companies=(0, 1))
        self.master = create_user(server, self.tree, UserTemplate.MASTER_CLIENT)
        self.company = create_user(server, self.tree, UserTemplate.COMPANY, companies=(0,))
        self.accountant = create_user(server, self.tree, UserTemplate.ACCOUNTANT)
        with server.sessions() as session, session.begin():
            environment = session.get(Environment, uuid.UUID(self.tree.environment_id))
            self.apps = [new_client(session, server.keyring, name=f"Payroll App {i}",
                                    scopes=APP_SCOPES) for i in range(2)]
            self.frontend = new_client(session, server.keyring, first_party=True,
                                       environment=environment, publisher="Koppel",
                                       scopes=FRONTEND_SCOPES)
        self.agents: list[Browser] = []
        self.tokens = {
            name: bearer_of(obtain_tokens(server, self.browser(), AuthRequest(
                self.frontend, scope=BOOKS_SCOPE if name == "accountant" else USER_SCOPE),
                user))
            for name, user in (("hr", self.hr), ("master", self.master),
                               ("company", self.company), ("accountant", self.accountant))}

    def browser(self) -> Browser:
        agent = Browser(self.server, fresh_address())
        self.agents.append(agent)
        return agent

    def close(self) -> None:
        for agent in self.agents:
            agent.close()


def _to_page(agent: Browser, response: httpx.Response) -> httpx.Response:
    """Follow the redirects that stay on the auth service."""
    while response.status_code in (302, 303) and response.headers["location"].startswith("/"):
        response = agent.follow(response)
    return response


def _ask_approval(agent: Browser, page: httpx.Response, justification: str) -> httpx.Response:
    form = form_to(page, "/consent/approval-request")
    return agent.http.post(form.action, data={**dict(form.fields),
                                              "justification": justification})


async def _audited(registry: httpx.AsyncClient, headers: dict, action: str) -> list[dict]:
    response = await registry.get("/v1/environment/audit-events", headers=headers,
                                  params={"action": action})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _connection(server: AuthServer, connection_id: str) -> Connection:
    with server.sessions() as session:
        row = session.get(Connection, uuid.UUID(connection_id))
        assert row is not None
        return row


async def test_a_request_from_the_page_approved_then_a_consent_without_the_page(
    settings: Settings, auth_server: AuthServer,
) -> None:
    s = Setup(auth_server)
    reg = registry_settings(settings, auth_server)
    books, hr, master, company = (s.tokens[n] for n in ("accountant", "hr", "master",
                                                        "company"))
    app = s.apps[0]
    try:
        async with running(create_registry(reg)) as registry, running(create_sync(reg)) as sync:
            # The policy: only master clients consent; HR managers may request apps.
            assert (await registry.put(f"{POLICY}/consent-templates", headers=books, json={
                "consent_templates": ["master_client"]})).status_code == 200
            for never in (["employee"], ["accountant"], ["hr_manager", "employee"]):
                refused = await registry.put(f"{POLICY}/approvals", headers=books, json={
                    "default_app_state": "allowed", "approval_request_templates": never})
                assert refused.status_code == 422, refused.text
                assert refused.headers["content-type"].startswith("application/problem+json")
            assert (await registry.put(f"{POLICY}/approvals", headers=hr, json={
                "default_app_state": "allowed", "approval_request_templates": ["hr_manager"]})
                    ).status_code == 403
            changed = await registry.put(f"{POLICY}/approvals", headers=books, json={
                "default_app_state": "allowed", "approval_request_templates": ["hr_manager"]})
            assert changed.status_code == 200, changed.text
            policy = (await registry.get(POLICY, headers=books)).json()
            assert policy["default_app_state"] == "allowed"
            assert policy["approval_request_templates"] == ["hr_manager"]
            assert policy["approval_request_templates_default"] is False

            # The HR manager reaches the approval page; no justification: asked again.
            agent = s.browser()
            request = AuthRequest(app, scope=PARTNER_SCOPE)
            page = _to_page(agent, agent.log_in(request, s.hr))
            assert page.status_code == 200, page.text[:500]
            parsed = parse_page(page.text)
            assert "data-approval" in page.text and parsed.scopes == ["company.info.read",
                                                                       "offline_access"]
            empty = _ask_approval(agent, page, "   ")
            assert empty.status_code == 400
            assert parse_page(empty.text).errors == ["justification_missing"]
            sent = _ask_approval(agent, empty, "We run the payroll planning in it.")
            assert sent.status_code == 303, sent.text[:500]
            params = callback_params(sent.headers["location"], request.target)
            assert params["error"] == "access_denied" and "code" not in params
            assert "approval is pending" in params["error_description"]
            assert params["state"] == request.state

            # The requester sees it pending; the deciders in reach see it too.
            [mine] = (await registry.get(MINE, headers=hr)).json()["data"]
            assert mine["status"] == "pending" and mine["app"]["client_id"] == app.client_id
            assert mine["scopes"] == ["company.info.read", "offline_access"]
            assert sorted(mine["company_ids"]) == sorted(s.tree.debtors[0][1])
            assert mine["justification"] == "We run the payroll planning in it."
            assert mine["debtor_id"] == s.tree.debtors[0][0]
            rid = mine["id"]
            for deciders in (books, master):
                listed = (await registry.get(REQUESTS, headers=deciders)).json()["data"]
                assert [r["id"] for r in listed] == [rid]
            pending = (await registry.get(REQUESTS, headers=books,
                                          params={"status": "pending"})).json()["data"]
            assert [r["id"] for r in pending] == [rid]
            assert (await registry.get(REQUESTS, headers=books,
                                       params={"status": "approved"})).json()["data"] == []
            # Out of reach: the requester itself (its template may not consent) and a
            # company login that reaches one of the two companies; 404, nothing listed.
            for outsider in (hr, company):
                assert (await registry.get(REQUESTS, headers=outsider)).json()["data"] == []
                assert (await registry.post(f"{REQUESTS}/{rid}/approve", headers=outsider)
                        ).status_code == 404
            assert (await registry.post(f"{REQUESTS}/{uuid.uuid4()}/approve", headers=books)
                    ).status_code == 404
            assert (await registry.post(f"{REQUESTS}/not-an-id/approve", headers=books)
                    ).status_code == 422

            # The master client approves: the requester's connection is recorded.
            approved = await registry.post(f"{REQUESTS}/{rid}/approve", headers=master,
                                           json={"reason": "fine for planning"})
            assert approved.status_code == 200, approved.text
            body = approved.json()
            assert body["status"] == "approved" and body["connection_id"]
            assert body["decided_by"] == f"user:{s.master.id}"
            connection = _connection(auth_server, body["connection_id"])
            assert connection.approved_by == f"user:{s.master.id}"
            assert str(connection.user_id) == str(s.hr.id)
            assert connection.scopes == ["company.info.read", "offline_access"]
            # Deciding again: 409, either way.
            for verb, payload in (("approve", None), ("deny", {"reason": "changed"})):
                again = await registry.post(f"{REQUESTS}/{rid}/{verb}", headers=books,
                                            json=payload)
                assert again.status_code == 409, again.text
                assert again.headers["content-type"].startswith("application/problem+json")
            [mine] = (await registry.get(MINE, headers=hr)).json()["data"]
            assert mine["status"] == "approved" and mine["decision_reason"] == \
                "fine for planning"
            listed = (await registry.get("/v1/me/connections", headers=hr)).json()["data"]
            assert [c["id"] for c in listed] == [body["connection_id"]]
            assert listed[0]["approved_by"] == f"user:{s.master.id}"
            overview = (await registry.get("/v1/environment/connections", headers=books,
                                           params={"user": str(s.hr.id)})).json()["data"]
            assert [(c["id"], c["approved_by"]) for c in overview] == [
                (body["connection_id"], f"user:{s.master.id}")]

            # The app's next authorization request completes without a page.
            again_request = AuthRequest(app, scope=PARTNER_SCOPE)
            linked = agent.link(again_request)
            assert linked.pages == [] and "code" in linked.params, linked.location
            tokens = exchange(auth_server, again_request, linked.params["code"])
            assert tokens.status_code == 200, tokens.text
            companies = await sync.get("/v1/companies", headers=bearer_of(tokens.json()))
            assert companies.status_code == 200, companies.text
            assert sorted(c["id"] for c in companies.json()["data"]) == \
                sorted(s.tree.debtors[0][1])
            with auth_server.sessions() as session:
                created = session.exec(select(Event).where(
                    Event.connection_id == connection.id,
                    Event.type == "connection.created")).all()
            assert len(created) == 1

            # The template rule: while HR managers may request, the approved connection
            # works; when they may not, it is suspended; when they may again, resumed.
            narrowed = await registry.put(f"{POLICY}/approvals", headers=books, json={
                "default_app_state": "allowed", "approval_request_templates": ["company"]})
            assert narrowed.json()["suspended"] == 1, narrowed.text
            assert (await sync.get("/v1/companies", headers=bearer_of(tokens.json()))
                    ).status_code == 401
            widened = await registry.put(f"{POLICY}/approvals", headers=books, json={
                "default_app_state": "allowed", "approval_request_templates": ["hr_manager"]})
            assert widened.json()["resumed"] == 1, widened.text

            # Past its expiry the connection needs an approval again; approving renews it.
            with auth_server.sessions() as session, session.begin():
                row = session.get(Connection, connection.id)
                assert row is not None
                row.expires_at = utcnow() - timedelta(seconds=1)
            page = _to_page(agent, agent.authorize(AuthRequest(app, scope=PARTNER_SCOPE)))
            assert page.status_code == 200 and "data-approval" in page.text
            assert _ask_approval(agent, page, "Still planning.").status_code == 303
            renewal = next(r for r in (await registry.get(MINE, headers=hr)).json()["data"]
                           if r["status"] == "pending")
            renewed = await registry.post(f"{REQUESTS}/{renewal['id']}/approve", headers=books)
            assert renewed.status_code == 200, renewed.text
            assert renewed.json()["connection_id"] == str(connection.id)
            row = _connection(auth_server, str(connection.id))
            assert row.status == "active" and row.expires_at is None  # no lifetime here
            assert row.approved_by == f"user:{s.accountant.id}"
            [renewed_audit] = await _audited(registry, books, "connection.renewed")
            assert renewed_audit["details"]["via"] == "consent_request"

            # Everything is audited.
            assert len(await _audited(registry, books, "consent_request.created")) == 2
            done = await _audited(registry, books, "consent_request.approved")
            assert {d["actor"]["id"] for d in done} == {str(s.master.id), str(s.accountant.id)}
            [granted] = await _audited(registry, books, "consent.granted")
            assert granted["details"]["approved_by"] == f"user:{s.master.id}"
            assert len(await _audited(registry, books, "policy.approvals_changed")) == 3
    finally:
        s.close()


async def test_an_approval_required_app_denied_and_a_request_that_expires(
    settings: Settings, auth_server: AuthServer,
) -> None:
    s = Setup(auth_server)
    reg = registry_settings(settings, auth_server)
    books, master = s.tokens["accountant"], s.tokens["master"]
    app = s.apps[1]
    try:
        async with running(create_registry(reg)) as registry:
            # The app needs approval: even a master client (who may consent) asks for it.
            decided = await registry.put(f"{POLICY}/apps/{app.client_id}", headers=books,
                                         json={"state": "approval_required"})
            assert decided.status_code == 200, decided.text
            assert (await registry.put(f"{POLICY}/apps/{app.client_id}", headers=books,
                                       json={"state": "blocked", "blocked": False})
                    ).status_code == 422
            assert (await registry.put(f"{POLICY}/apps/{app.client_id}", headers=books,
                                       json={"state": "maybe"})).status_code == 422
            [entry] = (await registry.get(POLICY, headers=books)).json()["apps"]
            assert entry["state"] == "approval_required" and entry["blocked"] is False
            agent = s.browser()
            request = AuthRequest(app, scope=PARTNER_SCOPE)
            page = _to_page(agent, agent.log_in(request, s.master))
            assert page.status_code == 200 and "data-approval" in page.text
            # Consenting anyway through the consent form is not possible: the approval
            # page comes back and nothing is linked.
            cancel = form_to(page, "/consent")
            forced = agent.http.post("/consent", data={
                **dict(cancel.fields), "decision": "allow",
                "debtor_id": s.tree.debtors[0][0], "company_id": s.tree.debtors[0][1]})
            assert forced.status_code == 200 and "data-approval" in forced.text
            sent = _ask_approval(agent, forced, "Needed for the year-end.")
            params = callback_params(sent.headers["location"], request.target)
            assert params["error"] == "access_denied"
            [mine] = (await registry.get(MINE, headers=master)).json()["data"]
            rid = mine["id"]
            # The master client cannot decide its own request; the accountant denies it.
            assert (await registry.post(f"{REQUESTS}/{rid}/deny", headers=master,
                                        json={"reason": "mine"})).status_code == 404
            assert (await registry.post(f"{REQUESTS}/{rid}/deny", headers=books,
                                        json={})).status_code == 422
            assert (await registry.post(f"{REQUESTS}/{rid}/deny", headers=books,
                                        json={"reason": "  "})).status_code == 422
            denied = await registry.post(f"{REQUESTS}/{rid}/deny", headers=books,
                                         json={"reason": "use the approved planner"})
            assert denied.status_code == 200, denied.text
            assert denied.json()["status"] == "denied"
            assert (await registry.post(f"{REQUESTS}/{rid}/approve", headers=books)
                    ).status_code == 409
            [mine] = (await registry.get(MINE, headers=master)).json()["data"]
            assert mine["status"] == "denied"
            assert mine["decision_reason"] == "use the approved planner"
            assert mine["connection_id"] is None
            assert (await registry.get("/v1/me/connections", headers=master)
                    ).json()["data"] == []
            [audit] = await _audited(registry, books, "consent_request.denied")
            assert audit["details"]["reason"] == "use the approved planner"

            # Asking again makes a new request; 30 days later it is expired (the clock
            # moved by dating the request back), and deciding it is 409.
            again = s.browser()
            page = _to_page(again, again.log_in(AuthRequest(app, scope=PARTNER_SCOPE),
                                                s.master))
            assert "data-pending-request" not in page.text
            assert _ask_approval(again, page, "Asking again.").status_code == 303
            second = next(r for r in (await registry.get(MINE, headers=master)).json()["data"]
                          if r["id"] != rid)
            assert second["status"] == "pending"
            with auth_server.sessions() as session, session.begin():
                row = session.get(ConsentRequest, uuid.UUID(second["id"]))
                assert row is not None
                assert row.expires_at - row.created_at == timedelta(days=30)
                row.created_at -= timedelta(days=30)
                row.expires_at -= timedelta(days=30)
            expired = (await registry.get(REQUESTS, headers=books,
                                          params={"status": "expired"})).json()["data"]
            assert [r["id"] for r in expired] == [second["id"]]
            assert (await registry.get(REQUESTS, headers=books,
                                       params={"status": "pending"})).json()["data"] == []
            late = await registry.post(f"{REQUESTS}/{second['id']}/approve", headers=books)
            assert late.status_code == 409 and "expired" in late.json()["detail"]

            # Another environment's accountant sees none of it and decides nothing.
            foreign = new_tree(auth_server)
            stranger: User = create_user(auth_server, foreign, UserTemplate.ACCOUNTANT)
            with auth_server.sessions() as session, session.begin():
                environment = session.get(Environment, uuid.UUID(foreign.environment_id))
                frontend = new_client(session, auth_server.keyring, first_party=True,
                                      environment=environment, publisher="Koppel",
                                      scopes=FRONTEND_SCOPES)
            theirs = bearer_of(obtain_tokens(auth_server, s.browser(), AuthRequest(
                frontend, scope=BOOKS_SCOPE), stranger))
            assert (await registry.get(REQUESTS, headers=theirs)).json()["data"] == []
            for rid_ in (rid, second["id"]):
                assert (await registry.post(f"{REQUESTS}/{rid_}/deny", headers=theirs,
                                            json={"reason": "x"})).status_code == 404
    finally:
        s.close()
