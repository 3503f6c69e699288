"""OpenID Connect RP-initiated logout (issue 15, part 4): `end_session_endpoint` in
discovery; an app's `id_token_hint` for the session's user ends the login session at
once and sends the browser to a registered `post_logout_redirect_uri` with `state`;
anything else asks the user first; an unregistered URI is never followed."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.conftest import Tree, create_user
from tests.services.auth.support import AuthRequest, Browser, exchange, parse_page

AFTER_LOGOUT = "https://partner.example/logged-out"


def _logged_in_with_id_token(auth_server: AuthServer, browser: Callable[..., Browser],
                             demo_tree: Tree, client: Client) -> tuple[Browser, str]:
    """A browser with a login session of a new user, and an ID token the app got for it."""
    user = create_user(auth_server, demo_tree)
    agent = browser()
    request = AuthRequest(client, scope="openid employee.info.read")
    linked = agent.link(request, user)
    return agent, exchange(auth_server, request, linked.params["code"]).json()["id_token"]


def _logged_in(auth_server: AuthServer, agent: Browser, client: Client) -> bool:
    """Whether the browser's session still signs it in (no login page on authorize)."""
    answer = agent.authorize(AuthRequest(client, scope="openid employee.info.read"))
    return "/login" not in answer.headers.get("location", "")


def test_an_id_token_hint_of_the_session_user_logs_out_and_returns_with_state(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    demo_tree: Tree,
) -> None:
    metadata = httpx.get(f"{auth_server.url}/.well-known/openid-configuration").json()
    assert metadata["end_session_endpoint"] == f"{auth_server.url}/end-session"
    client = new_app(post_logout_redirect_uris=[AFTER_LOGOUT])
    agent, id_token = _logged_in_with_id_token(auth_server, browser, demo_tree, client)
    assert _logged_in(auth_server, agent, client)

    answer = agent.http.get("/end-session", params={
        "id_token_hint": id_token, "post_logout_redirect_uri": AFTER_LOGOUT, "state": "s1"})
    assert answer.status_code == 303, answer.text
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == AFTER_LOGOUT
    assert parse_qs(location.query) == {"state": ["s1"]}
    assert not _logged_in(auth_server, agent, client)


def test_without_a_hint_the_user_is_asked_first(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    demo_tree: Tree,
) -> None:
    client = new_app(post_logout_redirect_uris=[AFTER_LOGOUT])
    agent, _ = _logged_in_with_id_token(auth_server, browser, demo_tree, client)
    asked = agent.http.get("/end-session", params={
        "client_id": client.client_id, "post_logout_redirect_uri": AFTER_LOGOUT,
        "state": "s2"})
    assert asked.status_code == 200
    assert _logged_in(auth_server, agent, client)  # a link alone logs nobody out
    form = parse_page(asked.text).forms[0]
    assert form.action == "/end-session"
    confirmed = agent.http.post("/end-session", data=dict(form.fields))
    assert confirmed.status_code == 303, confirmed.text
    assert confirmed.headers["location"] == f"{AFTER_LOGOUT}?state=s2"
    assert not _logged_in(auth_server, agent, client)


def test_an_unregistered_uri_or_a_foreign_hint_is_refused_and_changes_nothing(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    demo_tree: Tree,
) -> None:
    client = new_app(post_logout_redirect_uris=[AFTER_LOGOUT])
    agent, id_token = _logged_in_with_id_token(auth_server, browser, demo_tree, client)
    for params in (
        {"id_token_hint": id_token, "post_logout_redirect_uri": "https://evil.example/"},
        {"post_logout_redirect_uri": AFTER_LOGOUT},  # no client to check it against
        {"id_token_hint": id_token, "client_id": new_app().client_id},  # not its audience
    ):
        answer = agent.http.get("/end-session", params=params)
        assert answer.status_code == 400, (params, answer.text)
        assert "location" not in answer.headers
    forged_key = RSAKey.generate_key(2048, auto_kid=True)
    forged = jwt.encode({"alg": "RS256", "kid": forged_key.kid},
                        {"iss": auth_server.url, "aud": client.client_id, "sub": "x"}, forged_key)
    answer = agent.http.get("/end-session", params={"id_token_hint": forged})
    assert answer.status_code == 400
    assert _logged_in(auth_server, agent, client)
