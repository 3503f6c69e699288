"""Who may link a third-party app (SECURITY.md line 19, SPEC section 3): the templates of
the environment's consent policy; every active user may sign in to first-party apps,
which skip consent and make no connection."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from sqlmodel import func, select

from shared.models import AuthorizationCode, Connection
from tests.fixtures.auth_server import AuthServer
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    Tree,
    User,
    callback_params,
    exchange,
    parse_page,
    shown_scopes,
    verified_jwt,
)

MAY_CONSENT = ["master_client", "company", "hr_manager", "payroll_hr_manager"]
MAY_NOT = ["accountant", "employee"]


def granted_to(server: AuthServer, user: User) -> tuple[int, int]:
    """How many connections and codes the user has."""
    user_id = uuid.UUID(user.id)
    with server.sessions() as session:
        connections = session.exec(select(func.count()).select_from(Connection)
                                   .where(Connection.user_id == user_id)).one()
        codes = session.exec(select(func.count()).select_from(AuthorizationCode)
                             .where(AuthorizationCode.user_id == user_id)).one()
    return connections, codes


def access_claims(server: AuthServer, token: str) -> dict:
    return verified_jwt(server, token, "ES256")[1]


def assert_may_not_link(page: httpx.Response, request: AuthRequest, server: AuthServer) -> None:
    """A clear page for the user; the app hears only through the link the user may click."""
    assert page.status_code == 403, page.text[:300]
    assert "location" not in page.headers
    assert "code=" not in page.text
    assert "You cannot link apps" in page.text
    # It says which logins can.
    for name in ("Master Client", "Company login", "HR Manager (System)"):
        assert name in page.text
    (back,) = [link for link in parse_page(page.text).links if link.startswith("http")]
    params = callback_params(back, request.target)
    assert params["error"] == "access_denied"
    assert params["state"] == request.state
    assert params["iss"] == server.url


@pytest.mark.parametrize("template", MAY_NOT)
def test_line19_template_that_may_not_consent_gets_clear_refusal(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    template: str,
) -> None:
    user = new_user(template)
    agent = browser()
    request = AuthRequest(auth_server.clients["basic"])
    page = agent.follow(agent.log_in(request, user))
    assert_may_not_link(page, request, auth_server)
    assert granted_to(auth_server, user) == (0, 0)
    # Asking again gives nothing either.
    again = agent.follow(agent.authorize(AuthRequest(auth_server.clients["basic"])))
    assert again.status_code == 403
    assert granted_to(auth_server, user) == (0, 0)
    # First-party apps are open to every active user, without consent or connection.
    first_party = auth_server.clients["first_party"]
    own = AuthRequest(first_party, scope="openid connections.read")
    linked = agent.link(own)
    assert linked.pages == []
    tokens = exchange(auth_server, own, linked.params["code"])
    assert tokens.status_code == 200, tokens.text
    claims = access_claims(auth_server, tokens.json()["access_token"])
    assert claims["sub"] == user.id and claims["client_id"] == first_party.client_id
    assert "connection_id" not in claims and "debtor_id" not in claims
    assert granted_to(auth_server, user) == (0, 1)


@pytest.mark.parametrize("template", MAY_CONSENT)
def test_line19_template_that_may_consent_links_and_first_party_skips_consent(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    template: str,
) -> None:
    user = new_user(template)
    agent = browser()
    request = AuthRequest(auth_server.clients["basic"])
    agent.log_in(request, user)
    linked = agent.link(request)
    assert linked.pages == ["consent"]
    tokens = exchange(auth_server, request, linked.params["code"]).json()
    claims = access_claims(auth_server, tokens["access_token"])
    assert claims["debtor_id"] == auth_server.demo["debtors"][0]["id"]
    assert granted_to(auth_server, user)[0] == 1
    # The first-party app: no page, no second connection, no connection in the token.
    own = AuthRequest(auth_server.clients["first_party"], scope="openid employee.info.read")
    first_party = agent.link(own)
    assert first_party.pages == []
    claims = access_claims(auth_server,
                           exchange(auth_server, own, first_party.params["code"])
                           .json()["access_token"])
    assert "connection_id" not in claims
    assert granted_to(auth_server, user)[0] == 1


def test_inactive_user_cannot_log_in(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
) -> None:
    user = new_user(active=False)
    agent = browser()
    page = agent.follow(agent.authorize(AuthRequest(auth_server.clients["first_party"],
                                                    scope="openid")))
    assert agent.login(page, user).status_code == 401
    assert granted_to(auth_server, user) == (0, 0)


def test_environment_consent_policy_is_honoured(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_tree: Callable[..., Tree],
) -> None:
    tree = new_tree(consent_templates=["master_client", "company"])
    refused = new_user("hr_manager", tree=tree)
    agent = browser()
    request = AuthRequest(auth_server.clients["basic"])
    page = agent.follow(agent.log_in(request, refused))
    assert page.status_code == 403
    assert "Master Client, Company login." in page.text
    assert "HR Manager (System)" in page.text  # named as the user's own login
    assert granted_to(auth_server, refused) == (0, 0)

    allowed = new_user("company", tree=tree)
    other = browser()
    request = AuthRequest(auth_server.clients["basic"], scope="company.info.read")
    page = other.follow(other.log_in(request, allowed))
    assert page.status_code == 200
    assert shown_scopes(page) == ["company.info.read"]
