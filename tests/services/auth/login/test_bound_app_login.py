"""A first-party app bound to environment A admits only A's users (SECURITY.md line 34).

The demo's first-party client is bound to the demo environment (A). A user of another
environment (B) who logs in through it gets exactly the answer of a wrong password, and
the attempt counts as a failure; a session of B's user is not taken over by A's app.
So A's frontend never gets a token of B's user, and with it never reaches B's
overview or Manage apps: those answer with the token's user only.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    Tree,
    User,
    callback_params,
    obtain_tokens,
    only_form,
)


def _login(agent: Browser, client: Client, user: User, password: str | None = None
           ) -> httpx.Response:
    page = agent.follow(agent.authorize(AuthRequest(client, scope="openid")))
    assert page.status_code == 200, page.text[:300]
    return agent.login(page, user, password)


def _shape(response: httpx.Response, email: str) -> tuple[int, str]:
    """The answer with what differs per request (challenge, CSRF token, the typed email)
    taken out."""
    form = only_form(response)
    text = response.text
    for value in (form.value("login_challenge"), form.value("csrf_token"), email):
        text = text.replace(value, "")
    return response.status_code, text


def test_line34_another_environments_user_gets_the_wrong_password_answer(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_tree: Callable[..., Tree], new_first_party: Callable[..., Client],
) -> None:
    a_app = auth_server.clients["first_party"]
    b_tree = new_tree()
    b_user, a_user = new_user(tree=b_tree), new_user()

    foreign = _login(browser(), a_app, b_user)
    wrong = _login(browser(), a_app, a_user, "not the password")
    assert foreign.status_code == 401
    assert _shape(foreign, b_user.email) == _shape(wrong, a_user.email)
    assert "koppel_session" not in foreign.headers.get("set-cookie", "")

    # It counted as a failed attempt: with the second the account's budget (2) is used
    # up, and even the right password at B's own app is refused for now.
    assert _login(browser(), a_app, b_user).status_code == 401
    b_app = new_first_party(b_tree)
    assert _login(browser(), b_app, b_user).status_code == 429


def test_line34_a_session_of_another_environment_is_not_taken_over(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_tree: Callable[..., Tree], new_first_party: Callable[..., Client],
) -> None:
    b_tree = new_tree()
    b_user, b_app = new_user(tree=b_tree), new_first_party(b_tree)
    agent = browser()
    # B's user logs in at B's own frontend: a code, and a session in this browser.
    assert "code" in agent.link(AuthRequest(b_app, scope="openid"), b_user).params

    a_request = AuthRequest(auth_server.clients["first_party"], scope="openid")
    step = agent.follow(agent.authorize(a_request))  # the consent step decides
    assert step.status_code == 303
    assert urlsplit(step.headers["location"]).path == "/login"  # log in again, no code
    silent = agent.follow(agent.authorize(a_request, prompt="none"))
    params = callback_params(silent.headers["location"], a_request.target)
    assert params["error"] == "login_required" and "code" not in params


def test_a_platform_wide_app_admits_users_of_every_environment(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_tree: Callable[..., Tree], new_first_party: Callable[..., Client],
) -> None:
    platform = new_first_party()
    for user in (new_user(), new_user(tree=new_tree())):
        tokens = obtain_tokens(auth_server, browser(), AuthRequest(platform, scope="openid"),
                               user)
        assert tokens["token_type"] == "Bearer"
