"""Grant Management for OAuth 2.0 at the authorization and token endpoints: a grant is a
connection (`grant_id` is its id), `grant_management_action` `create`, `merge` and
`replace` with `grant_id`, and `invalid_grant_id` for a grant that is not the caller's
(docs/product.md 5.2, docs/security.md)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import col, select

from shared.models import App, AuditEvent, Connection, ConnectionStatus, Event
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    User,
    callback_params,
    exchange,
    obtain_tokens,
    refresh,
    shown_scopes,
)


def _grant(request_scope: str, client: Client, action: str | None = None,
           grant_id: str | None = None) -> AuthRequest:
    extra = {}
    if action is not None:
        extra["grant_management_action"] = action
    if grant_id is not None:
        extra["grant_id"] = grant_id
    return AuthRequest(client, scope=request_scope, extra=extra)


def _connection(server: AuthServer, grant_id: str) -> Connection:
    with server.sessions() as session:
        return session.get(Connection, uuid.UUID(grant_id))


def _refused(agent: Browser, request: AuthRequest, error: str) -> dict[str, str]:
    """The request goes back to the app with `error` (state and iss kept), no code."""
    linked = agent.link(request)
    assert linked.params.get("error") == error, linked.location
    assert linked.params["state"] == request.state
    assert linked.params["iss"] == agent.server.url
    assert "code" not in linked.params
    return linked.params


def kept_scopes(page: httpx.Response) -> list[str]:
    """The scopes a consent page says the link keeps."""
    return re.findall(r'data-kept-scope="([^"]+)"', page.text)


def dropped_scopes(page: httpx.Response) -> list[str]:
    """The scopes a consent page says the link loses."""
    return re.findall(r'data-dropped-scope="([^"]+)"', page.text)


def _consent_page(agent: Browser, request: AuthRequest) -> httpx.Response:
    page = agent.follow(agent.authorize(request))
    assert page.status_code == 200 and "/consent" in str(page.url), page.text[:300]
    return page


def test_grant_id_in_the_token_response_is_the_connection_id(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    tokens = obtain_tokens(auth_server, agent, AuthRequest(client), None)
    stored = _connection(auth_server, tokens["grant_id"])
    assert stored is not None and stored.status == ConnectionStatus.ACTIVE
    # A refresh is of the same grant, and says so.
    refreshed = refresh(auth_server, client, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["grant_id"] == tokens["grant_id"]
    # A first-party app's tokens come from no connection: no grant_id.
    first_party = obtain_tokens(auth_server, agent,
                                AuthRequest(auth_server.clients["first_party"], scope="openid"),
                                None)
    assert "grant_id" not in first_party


def test_merge_adds_scopes_to_the_same_grant_and_its_tokens_carry_the_union(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    first = obtain_tokens(auth_server, agent, _grant("employee.info.read offline_access",
                                                     client, "create"), None)
    grant_id = first["grant_id"]
    merge = _grant("employee.payment.read", client, "merge", grant_id)
    page = _consent_page(agent, merge)
    # The page shows the resulting grant: what is new, and what stays.
    assert shown_scopes(page) == ["employee.payment.read"]
    assert kept_scopes(page) == ["employee.info.read", "offline_access"]
    response = agent.submit(page, decision="allow")
    code = callback_params(response.headers["location"], client.redirect_uri)["code"]
    tokens = exchange(auth_server, merge, code).json()
    assert tokens["grant_id"] == grant_id
    union = {"employee.info.read", "offline_access", "employee.payment.read"}
    assert set(tokens["scope"].split()) == union
    assert set(_connection(auth_server, grant_id).scopes) == union
    # The refresh token of the merged grant keeps the union too.
    assert set(refresh(auth_server, client, tokens["refresh_token"]).json()["scope"].split()) \
        == union
    # Merging what the grant already holds asks nothing, and still returns the union.
    again = _grant("employee.info.read", client, "merge", grant_id)
    linked = agent.link(again)
    assert linked.pages == []
    assert set(exchange(auth_server, again, linked.params["code"]).json()["scope"].split()) \
        == union
    with auth_server.sessions() as session:
        audit = session.exec(select(AuditEvent).where(
            AuditEvent.subject_id == grant_id).order_by(AuditEvent.seq)).all()
        events = session.exec(select(Event).where(
            Event.connection_id == uuid.UUID(grant_id)).order_by(Event.id)).all()
    assert [a.action for a in audit] == ["consent.granted", "consent.scopes_added"]
    assert audit[1].details["added"] == ["employee.payment.read"]
    assert [e.type for e in events] == ["connection.created", "connection.updated"]
    assert events[1].data["changed_fields"] == ["scopes"]


def test_a_merge_never_brings_back_a_scope_the_app_no_longer_registers(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    """Found by review: the code of a merge carried the grant's stored scopes, so a scope
    removed from the registration (RFC 7592) came back in the new tokens."""
    client = new_app()
    agent = browser(signed_in=True)
    first = obtain_tokens(auth_server, agent, _grant(
        "employee.info.read employee.payment.read offline_access", client, "create"), None)
    with auth_server.sessions() as session, session.begin():
        app = session.exec(select(App).where(App.client_id == client.client_id)).one()
        app.scopes = [s for s in app.scopes if s != "employee.payment.read"]
    merge = _grant("employee.info.read", client, "merge", first["grant_id"])
    linked = agent.link(merge)
    tokens = exchange(auth_server, merge, linked.params["code"]).json()
    assert tokens["grant_id"] == first["grant_id"]
    assert set(tokens["scope"].split()) == {"employee.info.read", "offline_access"}


def test_replace_makes_the_new_scopes_the_only_ones(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    first = obtain_tokens(auth_server, agent, _grant(
        "employee.info.read employee.payment.read offline_access", client, "create"), None)
    grant_id = first["grant_id"]
    replace = _grant("company.info.read offline_access", client, "replace", grant_id)
    page = _consent_page(agent, replace)
    assert shown_scopes(page) == ["company.info.read"]
    assert kept_scopes(page) == ["offline_access"]
    assert dropped_scopes(page) == ["employee.info.read", "employee.payment.read"]
    response = agent.submit(page, decision="allow")
    code = callback_params(response.headers["location"], client.redirect_uri)["code"]
    tokens = exchange(auth_server, replace, code).json()
    assert tokens["grant_id"] == grant_id
    assert tokens["scope"] == "company.info.read offline_access"
    assert _connection(auth_server, grant_id).scopes == ["company.info.read", "offline_access"]
    # The tokens issued before carry the dropped scopes: their family ended.
    old = refresh(auth_server, client, first["refresh_token"])
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant", old.text
    assert refresh(auth_server, client, tokens["refresh_token"]).status_code == 200
    with auth_server.sessions() as session:
        audit = session.exec(select(AuditEvent).where(
            AuditEvent.subject_id == grant_id, AuditEvent.action == "consent.scopes_replaced"
        )).one()
        updated = session.exec(select(Event).where(
            Event.connection_id == uuid.UUID(grant_id), Event.type == "connection.updated"
        )).one()
    assert audit.details["added"] == ["company.info.read"]
    assert audit.details["removed"] == ["employee.info.read", "employee.payment.read"]
    assert audit.details["token_families"] == 1
    assert (audit.actor_type, audit.actor_id) == ("user", str(_connection(
        auth_server, grant_id).user_id))
    assert updated.data["changed_fields"] == ["scopes"]


def test_replace_that_only_narrows_still_asks_and_a_write_scope_keeps_its_read(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app(scopes=("employee.info", "employee.info.read", "company.info.read"))
    agent = browser(signed_in=True)
    first = obtain_tokens(auth_server, agent, _grant("employee.info company.info.read",
                                                     client, "create"), None)
    grant_id = first["grant_id"]
    # Same set: nothing to ask.
    same = agent.link(_grant("employee.info company.info.read", client, "replace", grant_id))
    assert same.pages == [] and "code" in same.params
    narrower = _grant("employee.info.read", client, "replace", grant_id)
    page = _consent_page(agent, narrower)
    assert shown_scopes(page) == ["employee.info.read"]
    assert kept_scopes(page) == []
    assert dropped_scopes(page) == ["employee.info", "company.info.read"]
    response = agent.submit(page, decision="allow")
    assert "code" in callback_params(response.headers["location"], client.redirect_uri)
    assert _connection(auth_server, grant_id).scopes == ["employee.info.read"]


def test_replace_of_a_read_scope_by_its_write_scope_drops_nothing(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    """Found by review: the page said nothing goes (the write scope keeps its read), but
    the grant recorded the read scope as removed and ended every token family."""
    client = new_app(scopes=("employee.info", "employee.info.read", "offline_access"))
    agent = browser(signed_in=True)
    first = obtain_tokens(auth_server, agent, _grant("employee.info.read offline_access",
                                                     client, "create"), None)
    grant_id = first["grant_id"]
    replace = _grant("employee.info offline_access", client, "replace", grant_id)
    page = _consent_page(agent, replace)
    assert shown_scopes(page) == ["employee.info"]
    assert dropped_scopes(page) == []
    response = agent.submit(page, decision="allow")
    code = callback_params(response.headers["location"], client.redirect_uri)["code"]
    tokens = exchange(auth_server, replace, code).json()
    assert tokens["grant_id"] == grant_id
    assert _connection(auth_server, grant_id).scopes == ["employee.info", "offline_access"]
    # The tokens issued before carry only what is still granted: they keep working.
    assert refresh(auth_server, client, first["refresh_token"]).status_code == 200
    with auth_server.sessions() as session:
        actions = session.exec(select(AuditEvent.action).where(
            AuditEvent.subject_id == grant_id).order_by(AuditEvent.seq)).all()
    assert actions == ["consent.granted", "consent.scopes_added"]


def test_create_where_a_grant_exists_updates_it_and_says_which(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    first = obtain_tokens(auth_server, agent, _grant("employee.info.read", client, "create"),
                          None)
    second = obtain_tokens(auth_server, agent, _grant("company.info.read", client, "create"),
                           None)
    assert second["grant_id"] == first["grant_id"]
    assert set(second["scope"].split()) == {"employee.info.read", "company.info.read"}
    with auth_server.sessions() as session:
        rows = session.exec(select(Connection).where(
            Connection.id == uuid.UUID(first["grant_id"]))).all()
    assert len(rows) == 1
    assert set(rows[0].scopes) == {"employee.info.read", "company.info.read"}


def test_invalid_grant_id_for_unknown_revoked_foreign_and_other_users_grants(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    new_user: Callable[..., User],
) -> None:
    client, other_app = new_app(), new_app()
    agent = browser(signed_in=True)
    mine = obtain_tokens(auth_server, agent, AuthRequest(client), None)["grant_id"]
    foreign_app = obtain_tokens(auth_server, agent, AuthRequest(other_app), None)["grant_id"]
    someone = browser()
    other_user = obtain_tokens(auth_server, someone, AuthRequest(client), new_user())["grant_id"]
    assert len({mine, foreign_app, other_user}) == 3
    for grant_id in (str(uuid.uuid4()), "not-a-grant", foreign_app, other_user):
        for action in ("merge", "replace"):
            _refused(agent, _grant("employee.info.read", client, action, grant_id),
                     "invalid_grant_id")
    # Revoked: the id of a connection that is no longer live.
    with auth_server.sessions() as session, session.begin():
        row = session.get(Connection, uuid.UUID(mine))
        row.status = ConnectionStatus.REVOKED
    _refused(agent, _grant("employee.info.read", client, "merge", mine), "invalid_grant_id")
    # None of this touched the grants.
    for grant_id in (foreign_app, other_user):
        assert _connection(auth_server, grant_id).scopes == ["employee.info.read",
                                                              "offline_access"]


@pytest.mark.parametrize(("params", "why"), [
    ({"grant_management_action": "create", "grant_id": str(uuid.uuid4())}, "with create"),
    ({"grant_management_action": "merge"}, "needs a grant_id"),
    ({"grant_management_action": "replace"}, "needs a grant_id"),
    ({"grant_id": str(uuid.uuid4())}, "needs grant_management_action"),
    ({"grant_management_action": "update"}, "must be create, merge or replace"),
    ({"grant_management_action": "query"}, "must be create, merge or replace"),
], ids=["create-with-id", "merge-without-id", "replace-without-id", "id-alone",
        "old-update", "query"])
def test_malformed_grant_management_requests_are_invalid_request(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    params: dict[str, str], why: str,
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    request = AuthRequest(client, extra=params)
    answer = _refused(agent, request, "invalid_request")
    assert why in answer["error_description"]
    with auth_server.sessions() as session:
        made = session.exec(select(Connection).join(App, col(App.id) == Connection.app_id)
                            .where(App.client_id == client.client_id)).all()
    assert made == []


def test_grant_management_is_for_confidential_third_party_clients(
    auth_server: AuthServer, browser: Callable[..., Browser],
) -> None:
    agent = browser(signed_in=True)
    for name, why in (("public", "confidential clients only"),
                      ("first_party", "first-party app has no grants")):
        client = auth_server.clients[name]
        scope = "openid" if name == "first_party" else "employee.info.read"
        answer = _refused(agent, _grant(scope, client, "create"), "invalid_request")
        assert why in answer["error_description"]


def test_a_repeated_grant_parameter_is_invalid_request(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    request = AuthRequest(client)
    query = [*request.params().items(), ("grant_management_action", "create"),
             ("grant_management_action", "merge")]
    response = agent.http.get("/authorize", params=query)
    assert response.status_code == 303
    params = callback_params(response.headers["location"], client.redirect_uri)
    assert params["error"] == "invalid_request"


def test_prompt_none_with_a_replace_that_needs_consent_is_consent_required(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    grant_id = obtain_tokens(auth_server, agent, AuthRequest(client), None)["grant_id"]
    request = _grant("company.info.read", client, "replace", grant_id)
    request.extra["prompt"] = "none"
    _refused(agent, request, "consent_required")
    assert _connection(auth_server, grant_id).scopes == ["employee.info.read", "offline_access"]


def test_discovery_advertises_grant_management(auth_server: AuthServer) -> None:
    metadata = httpx.get(f"{auth_server.url}/.well-known/openid-configuration").json()
    assert metadata["grant_management_endpoint"].endswith("/v1/grants")
    assert set(metadata["grant_management_actions_supported"]) == {
        "query", "revoke", "create", "merge", "replace"}
    assert metadata["grant_management_action_required"] is False
    same = httpx.get(f"{auth_server.url}/.well-known/oauth-authorization-server").json()
    assert same["grant_management_endpoint"] == metadata["grant_management_endpoint"]


def test_the_challenge_api_shows_the_resulting_grant_to_a_custom_consent_ui(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    """A SaaS frontend drawing its own consent screen learns what stays and what goes."""
    client = new_app()
    agent = browser(signed_in=True)
    grant_id = obtain_tokens(auth_server, agent, AuthRequest(client), None)["grant_id"]
    replace = _grant("company.info.read offline_access", client, "replace", grant_id)
    started = agent.authorize(replace)
    assert started.status_code == 303, started.text
    challenge = parse_qs(urlsplit(started.headers["location"]).query)["consent_challenge"][0]
    first_party = auth_server.clients["first_party"]
    with httpx.Client(base_url=auth_server.url, timeout=30,
                      auth=(first_party.client_id, first_party.secret)) as frontend:
        asked = frontend.get(f"/oauth2/consent-requests/{challenge}")
        assert asked.status_code == 200, asked.text
        body = asked.json()
        assert [s["scope"] for s in body["scopes"]] == ["company.info.read"]
        assert [s["scope"] for s in body["kept_scopes"]] == ["offline_access"]
        assert [s["scope"] for s in body["dropped_scopes"]] == ["employee.info.read"]
        debtor = body["debtors"][0]
        granted = frontend.post(f"/oauth2/consent-requests/{challenge}/accept", json={
            "debtor_id": debtor["id"], "company_ids": [debtor["companies"][0]["id"]]})
    assert granted.status_code == 200, granted.text
    code = callback_params(granted.json()["redirect_to"], client.redirect_uri)["code"]
    tokens = exchange(auth_server, replace, code).json()
    assert tokens["grant_id"] == grant_id
    assert tokens["scope"] == "company.info.read offline_access"
