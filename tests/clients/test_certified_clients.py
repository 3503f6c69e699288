"""Koppel as partner apps meet it through the OpenID Foundation's certified client
libraries: panva's openid-client 6 on oauth4webapi 3 (tests/clients/node/harness.mjs),
against auth, registry and sync on real sockets. The libraries do their own checks
(issuer, `iss` in the redirect (RFC 9207), state, PKCE, nonce, the ID token's signature,
audience and `at_hash`); a failed check is a failed step here. The FAPI 2.0 flow (PAR,
private_key_jwt, DPoP) is in test_fapi_clients.py."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.models import Partner
from shared.vault import TokenKind, new_token, token_digest
from tests.clients.harness import NodeApp, NodeAppError
from tests.fixtures.auth_server import CALLBACK, Client, new_client
from tests.fixtures.stack import Stack
from tests.services.auth.conftest import Tree, create_user
from tests.services.auth.support import Browser, User

OIDC_SCOPE = "openid profile email employee.info.read offline_access"
AFTER_LOGOUT = "https://partner.example/logged-out"


def demo_tree(stack: Stack) -> Tree:
    demo = stack.auth.demo
    return Tree(demo["environment"]["id"],
                [(d["id"], [c["id"] for c in d["companies"]]) for d in demo["debtors"]])


def new_app(stack: Stack, **fields: object) -> Client:
    with stack.auth.sessions() as session, session.begin():
        return new_client(session, stack.auth.keyring, **fields)


def link(stack: Stack, agent: Browser, url: str, user: User, redirect_uri: str) -> str:
    """The user logs in and consents in the browser; returns where the app is sent."""
    linked = agent.walk(agent.http.get(url), redirect_uri, user)
    assert linked.pages == ["login", "consent"], linked.pages
    return linked.location


def configure(node_app: NodeApp, stack: Stack, client: Client, **extra: object) -> dict:
    return node_app.call("configure", issuer=stack.auth.url, client_id=client.client_id,
                         client_secret=client.secret, auth=client.auth_method, **extra)


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post", "none"])
def test_openid_connect_code_flow_with_openid_client(
    stack: Stack, node_app: NodeApp, auth_method: str,
) -> None:
    client = new_app(stack, auth_method=auth_method,
                     post_logout_redirect_uris=[AFTER_LOGOUT])
    user = create_user(stack.auth, demo_tree(stack))
    metadata = configure(node_app, stack, client)["metadata"]
    assert metadata["issuer"] == stack.auth.url

    agent = Browser(stack.auth)
    try:
        url = node_app.call("authorize", scope=OIDC_SCOPE, redirect_uri=CALLBACK)["url"]
        tokens = node_app.call("callback", url=link(stack, agent, url, user, CALLBACK))
        assert tokens["token_type"].lower() == "bearer"
        assert tokens["id_token_claims"]["sub"] == user.id
        assert tokens["id_token_claims"]["aud"] == client.client_id
        assert tokens["refresh_token"]

        info = node_app.call("userinfo")["userinfo"]
        assert info["sub"] == user.id and info["email"] == user.email
        company_id = demo_tree(stack).debtors[0][1][0]
        employees_url = f"{stack.sync_url}/v1/companies/{company_id}/employees"
        employees = node_app.call("fetch", url=employees_url)
        assert employees["status"] == 200, employees
        assert employees["body"]["data"], "the connection reaches the user's company"

        refreshed = node_app.call("refresh")
        assert refreshed["refresh_token"] not in (None, tokens["refresh_token"])
        assert node_app.call("fetch", url=employees_url)["status"] == 200

        # RP-initiated logout through the library's end-session URL ends the login session.
        logout = node_app.call("end_session", post_logout_redirect_uri=AFTER_LOGOUT,
                               state="bye")["url"]
        answer = agent.http.get(logout)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == f"{AFTER_LOGOUT}?state=bye"
        again = node_app.call("authorize", scope=OIDC_SCOPE, redirect_uri=CALLBACK)["url"]
        assert "/login" in agent.http.get(again).headers["location"]
    finally:
        agent.close()


def test_a_refused_consent_is_an_error_the_library_reports(
    stack: Stack, node_app: NodeApp,
) -> None:
    client = new_app(stack)
    user = create_user(stack.auth, demo_tree(stack))
    configure(node_app, stack, client)
    agent = Browser(stack.auth)
    try:
        url = node_app.call("authorize", scope=OIDC_SCOPE, redirect_uri=CALLBACK)["url"]
        linked = agent.walk(agent.http.get(url), CALLBACK, user, decision="deny")
    finally:
        agent.close()
    with pytest.raises(NodeAppError) as refused:
        node_app.call("callback", url=linked.location)
    assert refused.value.error["error"] == "access_denied"


def test_rfc7591_registration_with_openid_client(stack: Stack, node_app: NodeApp) -> None:
    token = new_token(TokenKind.INITIAL_ACCESS_TOKEN)
    with stack.auth.sessions() as session, session.begin():
        session.add(Partner(name=f"Node Partner {uuid.uuid4().hex[:6]}",
                            initial_access_token_digest=token_digest(
                                stack.auth.keyring.digest_key, token)))
    registered = node_app.call("register", issuer=stack.auth.url, initial_access_token=token,
                               metadata={"client_name": "Node Planner",
                                         "redirect_uris": [CALLBACK],
                                         "token_endpoint_auth_method": "none",
                                         "scope": "openid employee.info.read"})["client"]
    assert registered["client_id"] and "client_secret" not in registered
    assert registered["registration_client_uri"].startswith(stack.registry_url)

    # The registered client links straight away, with what registration returned.
    client = Client(registered["client_id"], None, "none", (CALLBACK,),
                    ("openid", "employee.info.read"))
    user = create_user(stack.auth, demo_tree(stack))
    configure(node_app, stack, client)
    agent = Browser(stack.auth)
    try:
        url = node_app.call("authorize", scope="openid employee.info.read",
                            redirect_uri=CALLBACK)["url"]
        tokens = node_app.call("callback", url=link(stack, agent, url, user, CALLBACK))
    finally:
        agent.close()
    assert tokens["id_token_claims"]["aud"] == registered["client_id"]

    refused = node_app.attempt("register", issuer=stack.auth.url,
                               initial_access_token="kpiat_wrong",
                               metadata={"client_name": "Nope", "redirect_uris": [CALLBACK]})
    assert refused["ok"] is False and refused["error"]["status"] == 401


def test_the_redirect_carries_the_issuer_the_library_checks(
    stack: Stack, node_app: NodeApp,
) -> None:
    """RFC 9207: openid-client refuses a redirect whose `iss` is not the issuer."""
    client = new_app(stack)
    user = create_user(stack.auth, demo_tree(stack))
    configure(node_app, stack, client)
    agent = Browser(stack.auth)
    try:
        url = node_app.call("authorize", scope="employee.info.read", redirect_uri=CALLBACK)["url"]
        location = link(stack, agent, url, user, CALLBACK)
    finally:
        agent.close()
    query = parse_qs(urlsplit(location).query)
    assert query["iss"] == [stack.auth.url]
    forged = location.replace(httpx.QueryParams({"iss": stack.auth.url}).__str__(),
                              httpx.QueryParams({"iss": "https://evil.example"}).__str__())
    with pytest.raises(NodeAppError) as refused:
        node_app.call("callback", url=forged)
    assert "\"iss\" (issuer)" in refused.value.error["cause"]
    assert node_app.call("callback", url=location)["access_token"]
