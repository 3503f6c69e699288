"""The challenge API for a SaaS backend bound to environment A (SECURITY.md line 34): it
handles its own authorization requests and third-party apps' for A's users only. A
login of B's user gets the answer of a wrong password; B's consent challenges, and any
challenge of another first-party app, answer 404 and stay as they were."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import select

from shared.models import Connection
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import AuthRequest, Browser, Tree, User

Backends = Callable[[Client], httpx.Client]


@pytest.fixture
def backend(auth_server: AuthServer) -> Iterator[Backends]:
    """A first-party client's backend calling the challenge API (HTTP Basic)."""
    opened: list[httpx.Client] = []

    def make(client: Client) -> httpx.Client:
        http = httpx.Client(base_url=auth_server.url, auth=(client.client_id, client.secret),
                            timeout=30)
        opened.append(http)
        return http

    yield make
    for http in opened:
        http.close()


def _challenge(response: httpx.Response, name: str) -> str:
    assert response.status_code == 303, response.text[:300]
    return parse_qs(urlsplit(response.headers["location"]).query)[name][0]


def _login_challenge(agent: Browser, client: Client) -> str:
    return _challenge(agent.authorize(AuthRequest(client, scope="openid")), "login_challenge")


def _credentials(user: User, password: str | None = None) -> dict[str, str]:
    return {"username": user.email, "password": password or user.password}


def test_line34_a_bound_backend_does_not_log_in_another_environments_user(
    auth_server: AuthServer, backend: Backends, browser: Callable[..., Browser],
    new_user: Callable[..., User], new_tree: Callable[..., Tree],
    new_app: Callable[..., Client],
) -> None:
    a = backend(auth_server.clients["first_party"])
    a_user, b_user = new_user(), new_user(tree=new_tree())
    challenge = _login_challenge(browser(), new_app())
    path = f"/oauth2/login-requests/{challenge}"

    foreign = a.post(f"{path}/accept", json=_credentials(b_user))
    wrong = a.post(f"{path}/accept", json=_credentials(a_user, "not the password"))
    assert foreign.status_code == wrong.status_code == 401
    assert foreign.json() == wrong.json()
    # Nothing was used up: A's own user logs in with the same challenge.
    assert a.get(path).status_code == 200
    assert a.post(f"{path}/accept", json=_credentials(a_user)).status_code == 200


def test_line34_a_bound_backend_cannot_see_or_answer_other_challenges(
    auth_server: AuthServer, backend: Backends, browser: Callable[..., Browser],
    new_user: Callable[..., User], new_tree: Callable[..., Tree],
    new_app: Callable[..., Client], new_first_party: Callable[..., Client],
) -> None:
    a_app = auth_server.clients["first_party"]
    b_tree = new_tree()
    b_app, platform_app = new_first_party(b_tree), new_first_party()
    a, b, platform = backend(a_app), backend(b_app), backend(platform_app)
    a_user, b_user = new_user(), new_user(tree=b_tree)
    unknown = a.get("/oauth2/login-requests/kpch_unknown")
    assert unknown.status_code == 404

    # Login challenges of another first-party app: B's frontend and the platform's own.
    for other, user in ((b_app, b_user), (platform_app, a_user)):
        path = f"/oauth2/login-requests/{_login_challenge(browser(), other)}"
        refused = [a.get(path), a.post(f"{path}/reject", json={}),
                   a.post(f"{path}/accept", json=_credentials(a_user))]
        for response in refused:
            assert (response.status_code, response.json()["detail"]) == (
                404, unknown.json()["detail"])
        # Still there, untouched, for those who may handle it.
        owner = b if other is b_app else platform
        assert owner.get(path).status_code == 200
        assert platform.get(path).status_code == 200
        assert owner.post(f"{path}/accept", json=_credentials(user)).status_code == 200

    # B's app admits B's users only, whoever collects the credentials.
    path = f"/oauth2/login-requests/{_login_challenge(browser(), b_app)}"
    assert platform.post(f"{path}/accept", json=_credentials(a_user)).status_code == 401
    assert platform.post(f"{path}/accept", json=_credentials(b_user)).status_code == 200

    # A consent challenge of B's user for a third-party app.
    partner = new_app()
    agent = browser()
    consent = _challenge(agent.log_in(AuthRequest(partner, scope="company.info.read"), b_user),
                         "consent_challenge")
    path = f"/oauth2/consent-requests/{consent}"
    debtor_id, company_ids = b_tree.debtors[0]
    refused = [a.get(path),
               a.post(f"{path}/accept", json={"debtor_id": debtor_id,
                                               "company_ids": company_ids[:1]}),
               a.post(f"{path}/reject")]
    for response in refused:
        assert (response.status_code, response.json()["detail"]) == (
            404, unknown.json()["detail"])
    with auth_server.sessions() as session:
        assert session.exec(select(Connection).where(
            Connection.user_id == uuid.UUID(b_user.id))).all() == []
    assert platform.get(path).json()["user"]["email"] == b_user.email
    assert b.get(path).status_code == 200
