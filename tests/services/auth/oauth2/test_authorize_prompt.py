"""`prompt`, `max_age` and suspended apps at the authorization endpoint (OpenID Connect
Core 3.1.2.1): when the user must log in or consent again, and when no page may show."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from sqlmodel import select

from shared.models import App, AppStatus
from shared.models import User as UserRow
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    User,
    callback_params,
    exchange,
    introspect,
    oauth_error,
    refresh,
    verified_jwt,
)


def answer_to_app(agent: Browser, response: httpx.Response) -> str:
    """Where the browser is sent in the end, passing through the consent step; fails if
    a page is shown instead."""
    while response.headers.get("location", "").startswith("/"):
        response = agent.follow(response)
    assert response.status_code in (302, 303), (response.status_code, response.text[:300])
    return response.headers["location"]


def silent_error(agent: Browser, request: AuthRequest, server: AuthServer, **params: str) -> str:
    params_back = callback_params(answer_to_app(agent, agent.authorize(request, **params)),
                                  request.target)
    assert params_back["state"] == request.state
    assert params_back["iss"] == server.url
    assert "code" not in params_back
    return params_back["error"]


# ---- prompt=none ------------------------------------------------------------------------


def test_prompt_none_without_session_is_login_required(
    auth_server: AuthServer, browser: Callable[..., Browser],
) -> None:
    request = AuthRequest(auth_server.clients["basic"])
    assert silent_error(browser(), request, auth_server, prompt="none") == "login_required"


def test_prompt_none_without_consent_is_consent_required(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    agent = browser(signed_in=True)
    request = AuthRequest(new_app())
    assert silent_error(agent, request, auth_server, prompt="none") == "consent_required"


def test_prompt_none_with_remembered_consent_gives_code_without_ui(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    agent.link(AuthRequest(client))
    request = AuthRequest(client)
    location = answer_to_app(agent, agent.authorize(request, prompt="none"))
    params = callback_params(location, request.target)
    assert params["state"] == request.state
    assert exchange(auth_server, request, params["code"]).status_code == 200


# decide() returns its 403 pages (and NeedLogin, which sends to /login) before it looks at
# prompt, so prompt=none still shows UI; OpenID Connect Core 3.1.2.1 forbids any then.


@pytest.mark.parametrize(("case", "expected"), [
    ("template_may_not_consent", {"access_denied", "consent_required"}),
    ("user_reaches_no_companies", {"access_denied", "consent_required"}),
    ("user_deactivated_after_login", {"login_required"}),
])
def test_prompt_none_never_shows_ui_when_the_app_gets_no_code(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    case: str, expected: set[str],
) -> None:
    user = {
        "template_may_not_consent": lambda: new_user("employee"),
        "user_reaches_no_companies": lambda: new_user("company", companies=()),
        "user_deactivated_after_login": new_user,
    }[case]()
    agent = browser()
    agent.log_in(AuthRequest(auth_server.clients["first_party"], scope="openid"), user)
    if case == "user_deactivated_after_login":
        with auth_server.sessions() as session, session.begin():
            session.get(UserRow, uuid.UUID(user.id)).active = False
    request = AuthRequest(auth_server.clients["basic"])
    assert silent_error(agent, request, auth_server, prompt="none") in expected


# ---- prompt=consent, prompt=login, max_age ---------------------------------------------


def test_prompt_consent_shows_the_page_despite_remembered_consent(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    agent.link(AuthRequest(client))
    again = agent.link(AuthRequest(client, extra={"prompt": "consent"}))
    assert again.pages == ["consent"]
    assert again.scopes_shown == AuthRequest(client).scope.split()
    assert "code" in again.params


def test_prompt_login_asks_for_the_password_again(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    signed_in_user: tuple[User, str],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    agent.link(AuthRequest(client))
    before = time.time()
    request = AuthRequest(client, scope="openid employee.info.read", extra={"prompt": "login"})
    linked = agent.link(request, signed_in_user[0])
    assert linked.pages == ["login", "consent"]  # openid is new for this app
    id_token = exchange(auth_server, request, linked.params["code"]).json()["id_token"]
    _, claims = verified_jwt(auth_server, id_token, "RS256")
    assert claims["auth_time"] >= int(before)


def test_max_age_zero_asks_for_login_and_a_fresh_login_passes_max_age(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    signed_in_user: tuple[User, str],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    agent.link(AuthRequest(client))
    request = AuthRequest(client, scope="openid employee.info.read", extra={"max_age": "0"})
    linked = agent.link(request, signed_in_user[0])
    assert linked.pages[0] == "login"
    id_token = exchange(auth_server, request, linked.params["code"]).json()["id_token"]
    _, claims = verified_jwt(auth_server, id_token, "RS256")
    assert abs(claims["auth_time"] - time.time()) < 30  # OIDC: auth_time with max_age
    # Right after logging in, a generous max_age needs no new login.
    fresh = agent.authorize(AuthRequest(client, extra={"max_age": "600"}))
    assert fresh.headers["location"].startswith("/consent?")


@pytest.mark.parametrize("params", [
    {"prompt": "none login"}, {"prompt": "sometimes"}, {"max_age": "-1"},
    {"max_age": "soon"},
])
def test_invalid_prompt_or_max_age_is_invalid_request(
    auth_server: AuthServer, browser: Callable[..., Browser], params: dict[str, str],
) -> None:
    request = AuthRequest(auth_server.clients["basic"])
    assert silent_error(browser(), request, auth_server, **params) == "invalid_request"


# ---- Suspended apps --------------------------------------------------------------------


def test_suspended_app_is_access_denied_and_its_tokens_stop_working(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    first = AuthRequest(client)
    linked = agent.link(first)
    tokens = exchange(auth_server, first, linked.params["code"]).json()
    with auth_server.sessions() as session, session.begin():
        app = session.exec(select(App).where(App.client_id == client.client_id)).one()
        app.status = AppStatus.SUSPENDED
    request = AuthRequest(client)
    assert silent_error(agent, request, auth_server) == "access_denied"
    assert introspect(auth_server, client, tokens["access_token"]) == {"active": False}
    response = refresh(auth_server, client, tokens["refresh_token"])
    assert response.status_code == 400
    assert oauth_error(response) == "invalid_grant"


def test_seeded_suspended_app_is_access_denied(
    auth_server: AuthServer, browser: Callable[..., Browser],
) -> None:
    request = AuthRequest(auth_server.clients["suspended"])
    assert silent_error(browser(signed_in=True), request, auth_server) == "access_denied"


@pytest.mark.parametrize("alg", [None, "RS256", "ES256"])
def test_id_tokens_are_signed_with_the_registered_algorithm(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    signed_in_user: tuple[User, str], alg: str | None,
) -> None:
    """`id_token_signed_response_alg` was silently dropped; ES256 is honoured now, and
    discovery lists both."""
    metadata = httpx.get(f"{auth_server.url}/.well-known/openid-configuration").json()
    assert set(metadata["id_token_signing_alg_values_supported"]) == {"RS256", "ES256"}
    client = new_app(id_token_signed_response_alg=alg)
    request = AuthRequest(client, scope="openid employee.info.read")
    linked = browser(signed_in=True).link(request, signed_in_user[0])
    id_token = exchange(auth_server, request, linked.params["code"]).json()["id_token"]
    header, claims = verified_jwt(auth_server, id_token, alg or "RS256")
    assert header["alg"] == (alg or "RS256")
    assert claims["aud"] == client.client_id
