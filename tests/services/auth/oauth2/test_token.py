"""The token endpoint with authorization codes (SECURITY.md lines 5-8 and 18): a code is
single use, short lived, and bound to its client, redirect URI and PKCE verifier."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from sqlmodel import select

from shared.db.types import utcnow
from shared.models import App, AuthorizationCode, TokenFamily
from shared.models import User as UserRow
from shared.vault import TokenKind, new_token
from tests.fixtures.auth_server import CALLBACK, SECOND_CALLBACK, AuthServer, Client
from tests.fixtures.factories import make_authorization_code, make_token_family
from tests.services.auth.conftest import create_user
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    Pkce,
    Tree,
    User,
    authorization_code,
    exchange,
    introspect,
    oauth_error,
    post_form,
    refresh,
    revoke,
)

NO_STORE = "no-store"


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert oauth_error(response) == "invalid_grant"
    assert "access_token" not in response.json()


def code_row(server: AuthServer, code: str) -> AuthorizationCode:
    with server.sessions() as session:
        return session.exec(select(AuthorizationCode)
                            .where(AuthorizationCode.code_digest == server.digest(code))).one()


# ---- Line 5: the PKCE verifier --------------------------------------------------------


@pytest.mark.parametrize("verifier", [
    "wrong-" + "v" * 50,  # well-formed, not the one
    None,  # missing
    "",  # empty
])
def test_line05_wrong_or_missing_code_verifier_is_invalid_grant(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    verifier: str | None,
) -> None:
    request = AuthRequest(new_app())
    code = authorization_code(browser(signed_in=True), request, None)
    assert_invalid_grant(exchange(auth_server, request, code, code_verifier=verifier))


def test_line05_verifier_of_another_request_is_invalid_grant(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    """The verifier of the user's other (genuine) request does not fit this code."""
    request = AuthRequest(new_app(auth_method="none"))
    code = authorization_code(browser(signed_in=True), request, None)
    other = Pkce.new()
    assert_invalid_grant(exchange(auth_server, request, code, code_verifier=other.verifier))


def test_line05_the_challenge_itself_is_no_verifier(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    request = AuthRequest(new_app(auth_method="none"))
    code = authorization_code(browser(signed_in=True), request, None)
    assert_invalid_grant(exchange(auth_server, request, code,
                                  code_verifier=request.pkce.challenge))


def test_line05_verifier_for_code_issued_without_challenge_is_invalid_grant(
    auth_server: AuthServer, new_user: Callable[..., User],
) -> None:
    """No code is issued without a challenge; one that somehow was is still refused."""
    client = auth_server.clients["basic"]
    user = new_user()
    code = new_token(TokenKind.AUTHORIZATION_CODE)
    with auth_server.sessions() as session, session.begin():
        app = session.exec(select(App).where(App.client_id == client.client_id)).one()
        family = make_token_family(session, app, session.get(UserRow, uuid.UUID(user.id)),
                                   scopes=["employee.info.read"])
        make_authorization_code(session, family, code_digest=auth_server.digest(code),
                                code_challenge="", redirect_uri=client.redirect_uri)
    request = AuthRequest(client)
    assert_invalid_grant(exchange(auth_server, request, code))


# ---- Line 6: a code redeemed twice ----------------------------------------------------


def test_line06_code_redeemed_twice_is_invalid_grant_and_first_tokens_stop_working(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    request = AuthRequest(client)
    code = authorization_code(browser(signed_in=True), request, None)
    first = exchange(auth_server, request, code)
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert introspect(auth_server, client, tokens["access_token"])["active"] is True

    assert_invalid_grant(exchange(auth_server, request, code))
    assert introspect(auth_server, client, tokens["access_token"]) == {"active": False}
    assert introspect(auth_server, client, tokens["refresh_token"]) == {"active": False}
    assert_invalid_grant(refresh(auth_server, client, tokens["refresh_token"]))
    with auth_server.sessions() as session:
        family = session.get(TokenFamily, code_row(auth_server, code).family_id)
        assert family.revoked_at is not None


def test_line06_code_redeemed_twice_at_once_gives_one_token_response(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app(auth_method="client_secret_post")
    request = AuthRequest(client)
    code = authorization_code(browser(signed_in=True), request, None)
    barrier = threading.Barrier(2)

    def redeem(_: int) -> httpx.Response:
        barrier.wait()
        return exchange(auth_server, request, code)

    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(redeem, range(2)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 400], [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()
    loser = next(r for r in responses if r.status_code == 400)
    assert oauth_error(loser) == "invalid_grant"
    # The replay ends the family: the winner's tokens stop working too.
    assert introspect(auth_server, client, winner["access_token"]) == {"active": False}
    assert_invalid_grant(refresh(auth_server, client, winner["refresh_token"]))


# ---- Line 7: a code bound to its client, redirect URI and life ------------------------


def test_line07_code_used_by_another_client_is_invalid_grant(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    request = AuthRequest(new_app())
    code = authorization_code(browser(signed_in=True), request, None)
    for thief in ("post", "public", "first_party"):
        assert_invalid_grant(exchange(auth_server, request, code,
                                      client=auth_server.clients[thief]))
    assert code_row(auth_server, code).consumed_at is None


@pytest.mark.parametrize("redirect_uri", [SECOND_CALLBACK, None, SECOND_CALLBACK + "/x"])
def test_line07_code_with_another_redirect_uri_is_invalid_grant(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    redirect_uri: str | None,
) -> None:
    """The app has both URIs registered; the code was issued for the first one."""
    request = AuthRequest(new_app(redirect_uris=(CALLBACK, SECOND_CALLBACK)))
    code = authorization_code(browser(signed_in=True), request, None)
    assert_invalid_grant(exchange(auth_server, request, code, redirect_uri=redirect_uri))


def test_line07_code_after_its_life_is_invalid_grant(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    request = AuthRequest(new_app())
    code = authorization_code(browser(signed_in=True), request, None)
    row = code_row(auth_server, code)
    # Issued with the 5 minute life of SPEC 5.2.
    assert timedelta(minutes=4, seconds=50) < row.expires_at - row.created_at <= timedelta(
        minutes=5)
    with auth_server.sessions() as session, session.begin():
        session.get(AuthorizationCode, row.id).expires_at = utcnow() - timedelta(seconds=1)
    assert_invalid_grant(exchange(auth_server, request, code))


def test_line07_unknown_code_is_invalid_grant(auth_server: AuthServer) -> None:
    request = AuthRequest(auth_server.clients["basic"])
    assert_invalid_grant(exchange(auth_server, request, new_token(TokenKind.AUTHORIZATION_CODE)))


# ---- Line 8: grant types -----------------------------------------------------------------


@pytest.mark.parametrize("grant_type", ["password", "implicit", "urn:ietf:params:oauth:x"])
def test_line08_grant_type_password_is_unsupported_grant_type(
    auth_server: AuthServer, new_user: Callable[..., User], grant_type: str,
) -> None:
    user = new_user()
    response = post_form(auth_server, "/token", auth_server.clients["basic"], {
        "grant_type": grant_type, "username": user.email, "password": user.password,
        "scope": "employee.info.read",
    })
    assert response.status_code == 400, response.text
    assert oauth_error(response) == "unsupported_grant_type"
    assert "access_token" not in response.json()


# ---- Line 18: no-store, and no tokens in URLs or logs ----------------------------------


def test_line18_token_responses_are_no_store(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    request = AuthRequest(client)
    code = authorization_code(browser(signed_in=True), request, None)
    success = exchange(auth_server, request, code)
    refreshed = refresh(auth_server, client, success.json()["refresh_token"])
    replay = exchange(auth_server, request, code)
    bad_client = post_form(auth_server, "/token", replace(client, secret="kps_wrong"),
                           {"grant_type": "refresh_token", "refresh_token": "x"})
    unsupported = post_form(auth_server, "/token", client, {"grant_type": "password"})
    not_a_form = httpx.post(f"{auth_server.url}/token", json={"grant_type": "refresh_token"})
    expected = [(success, 200), (refreshed, 200), (replay, 400), (bad_client, 401),
                (unsupported, 400), (not_a_form, 400)]
    for response, status in expected:
        assert response.status_code == status, response.text
        assert NO_STORE in response.headers.get("cache-control", ""), response.headers
        assert response.headers.get("pragma") == "no-cache"


def test_line18_no_tokens_in_urls_or_server_log(
    auth_server_process: AuthServer, fresh_address: Callable[[], str],
) -> None:
    # The child process: its log is the server's alone, as written in production.
    auth_server = auth_server_process
    demo = auth_server.demo
    tree = Tree(demo["environment"]["id"],
                [(d["id"], [c["id"] for c in d["companies"]]) for d in demo["debtors"]])
    client = auth_server.clients["basic"]
    user = create_user(auth_server, tree)
    agent = Browser(auth_server, fresh_address())
    request = AuthRequest(client, scope="employee.info.read offline_access openid")
    try:
        # A failed login first: the password typed must not be logged either.
        login_page = agent.follow(agent.authorize(request))
        assert agent.login(login_page, user, password="typo-Pa55word!").status_code == 401
        linked = agent.link(request, user)
    finally:
        agent.close()
    # The only thing the app gets through the browser is the code (no token).
    assert set(linked.params) == {"code", "state", "iss"}
    tokens = exchange(auth_server, request, linked.params["code"]).json()
    second = refresh(auth_server, client, tokens["refresh_token"]).json()
    introspect(auth_server, client, second["access_token"])
    httpx.get(f"{auth_server.url}/userinfo",
              headers={"Authorization": f"Bearer {second['access_token']}"})
    assert revoke(auth_server, client, second["refresh_token"]).status_code == 200
    secrets_seen = {
        "code": linked.params["code"],
        "access token": tokens["access_token"],
        "id token": tokens["id_token"],
        "refresh token": tokens["refresh_token"],
        "second access token": second["access_token"],
        "second refresh token": second["refresh_token"],
        "client secret": client.secret,
        "password": user.password,
        "typed password": "typo-Pa55word!",
    }
    log = auth_server.log_text()
    assert "POST /token" in log  # the log is the server's, and it was written to
    for what, secret in secrets_seen.items():
        assert secret not in log, f"the {what} is in the server log"
        # The signature alone identifies a JWT too.
        if secret.count(".") == 2:
            assert secret.rsplit(".", 1)[1] not in log, f"the {what} is in the server log"


# ---- Client authentication; other clients' tokens --------------------------------------


@pytest.mark.parametrize(("registered", "used"), [
    ("client_secret_basic", "client_secret_post"),
    ("client_secret_basic", "none"),
    ("client_secret_post", "client_secret_basic"),
    ("client_secret_post", "none"),
])
def test_client_authenticates_only_with_its_registered_method(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    registered: str, used: str,
) -> None:
    client = new_app(auth_method=registered)
    request = AuthRequest(client)
    code = authorization_code(browser(signed_in=True), request, None)
    response = exchange(auth_server, request, code, client=replace(client, auth_method=used))
    assert response.status_code == 401, response.text
    assert oauth_error(response) == "invalid_client"
    assert exchange(auth_server, request, code).status_code == 200


def test_another_client_can_neither_revoke_nor_introspect_a_token(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    owner, other = new_app(), new_app()
    request = AuthRequest(owner)
    tokens = exchange(auth_server, request,
                      authorization_code(browser(signed_in=True), request, None)).json()
    for token in (tokens["access_token"], tokens["refresh_token"]):
        assert introspect(auth_server, other, token) == {"active": False}
        revoke(auth_server, other, token)
    assert introspect(auth_server, owner, tokens["access_token"])["active"] is True
    assert refresh(auth_server, owner, tokens["refresh_token"]).status_code == 200


def test_client_credentials_give_app_level_scopes_only(
    auth_server: AuthServer, new_app: Callable[..., Client],
) -> None:
    client = new_app()
    granted = post_form(auth_server, "/token", client, {"grant_type": "client_credentials"})
    assert granted.status_code == 200, granted.text
    assert granted.json()["scope"] == "webhooks.manage"
    assert "refresh_token" not in granted.json()
    for scope in ("employee.info.read", "webhooks.manage directory.manage", "openid"):
        response = post_form(auth_server, "/token", client,
                             {"grant_type": "client_credentials", "scope": scope})
        assert response.status_code == 400, (scope, response.text)
        assert oauth_error(response) == "invalid_scope"
    public = new_app(auth_method="none")
    response = post_form(auth_server, "/token", public, {"grant_type": "client_credentials"})
    assert response.status_code in (400, 401)
    assert oauth_error(response) in ("invalid_client", "unauthorized_client")
