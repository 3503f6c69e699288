"""The login and consent challenge API, driven as a SaaS frontend's backend would."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import col, select

from shared.attestation import attestation_jwks
from shared.models import Connection, ConsentReceipt
from shared.receipts import verify_receipt
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import AuthRequest, Browser, User, callback_params, exchange


@pytest.fixture
def frontend(auth_server: AuthServer) -> httpx.Client:
    """The frontend's backend: authenticated as the first-party client with HTTP Basic."""
    first_party = auth_server.clients["first_party"]
    with httpx.Client(base_url=auth_server.url, auth=(first_party.client_id, first_party.secret),
                      timeout=30) as http:
        yield http


def _challenge(response: httpx.Response, name: str) -> str:
    assert response.status_code == 303, response.text[:300]
    return parse_qs(urlsplit(response.headers["location"]).query)[name][0]


def test_login_and_consent_through_the_api(
    auth_server: AuthServer, frontend: httpx.Client, browser: Callable[..., Browser],
    new_user: Callable[..., User], new_app: Callable[..., Client],
) -> None:
    agent, user, app = browser(), new_user(), new_app()
    request = AuthRequest(app, scope="employee.info.read company.info.read")
    login_challenge = _challenge(agent.authorize(request), "login_challenge")

    about = frontend.get(f"/oauth2/login-requests/{login_challenge}")
    assert about.status_code == 200
    assert about.json()["client"]["client_id"] == app.client_id
    assert about.json()["requested_scopes"] == ["employee.info.read", "company.info.read"]

    wrong = frontend.post(f"/oauth2/login-requests/{login_challenge}/accept",
                          json={"username": user.email, "password": "not-it"})
    assert wrong.status_code == 401
    assert wrong.headers["content-type"].startswith("application/problem+json")

    accepted = frontend.post(f"/oauth2/login-requests/{login_challenge}/accept",
                             json={"username": user.email, "password": user.password})
    assert accepted.status_code == 200
    # One-time: the challenge is used up.
    assert frontend.get(f"/oauth2/login-requests/{login_challenge}").status_code == 404

    # The browser comes back to Koppel, which starts its session there.
    back = agent.http.get(accepted.json()["redirect_to"])
    consent_challenge = _challenge(back, "consent_challenge")
    assert "koppel_session" in agent.http.cookies

    asked = frontend.get(f"/oauth2/consent-requests/{consent_challenge}")
    assert asked.status_code == 200
    body = asked.json()
    assert body["user"]["email"] == user.email
    assert [s["scope"] for s in body["scopes"]] == ["employee.info.read", "company.info.read"]
    debtor = body["debtors"][0]

    granted = frontend.post(
        f"/oauth2/consent-requests/{consent_challenge}/accept",
        json={"debtor_id": debtor["id"], "company_ids": [debtor["companies"][0]["id"]]},
    )
    assert granted.status_code == 200
    params = callback_params(granted.json()["redirect_to"], request.target)
    assert params["state"] == request.state and params["iss"] == auth_server.url
    token = exchange(auth_server, request, params["code"])
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "employee.info.read company.info.read"

    # Its consent receipt says the challenge API collected it, with the words it gave.
    with auth_server.sessions() as session:
        [receipt] = session.exec(select(ConsentReceipt).join(
            Connection, col(Connection.id) == ConsentReceipt.connection_id).where(
            Connection.user_id == uuid.UUID(user.id))).all()
        _, claims = verify_receipt(receipt.jws, attestation_jwks(session))
    assert (claims["act"], claims["collectionMethod"]) == ("granted", "challenge_api")
    assert ({s["scope"]: (s["title"], s["description"]) for s in claims["scopes"]}
            == {s["scope"]: (s["title"], s["description"]) for s in body["scopes"]})


def test_a_challenge_from_another_browser_is_useless(
    auth_server: AuthServer, frontend: httpx.Client, browser: Callable[..., Browser],
    new_user: Callable[..., User], new_app: Callable[..., Client],
) -> None:
    request = AuthRequest(new_app())
    login_challenge = _challenge(browser().authorize(request), "login_challenge")
    user = new_user()
    accepted = frontend.post(f"/oauth2/login-requests/{login_challenge}/accept",
                             json={"username": user.email, "password": user.password})
    # An attacker's browser (no binding cookie) cannot finish someone else's login.
    stranger = browser().http.get(accepted.json()["redirect_to"])
    assert stranger.status_code == 400
    assert "koppel_session" not in stranger.cookies


def test_reject_login_sends_the_error_to_the_app(
    auth_server: AuthServer, frontend: httpx.Client, browser: Callable[..., Browser],
    new_app: Callable[..., Client],
) -> None:
    request = AuthRequest(new_app())
    login_challenge = _challenge(browser().authorize(request), "login_challenge")
    rejected = frontend.post(f"/oauth2/login-requests/{login_challenge}/reject",
                             json={"error": "access_denied", "error_description": "cancelled"})
    assert rejected.status_code == 200
    params = callback_params(rejected.json()["redirect_to"], request.target)
    assert params["error"] == "access_denied"
    assert params["state"] == request.state and params["iss"] == auth_server.url


def test_reject_consent_sends_access_denied(
    auth_server: AuthServer, frontend: httpx.Client, browser: Callable[..., Browser],
    new_user: Callable[..., User], new_app: Callable[..., Client],
) -> None:
    agent, user, request = browser(), new_user(), AuthRequest(new_app())
    consent_challenge = _challenge(agent.log_in(request, user), "consent_challenge")
    rejected = frontend.post(f"/oauth2/consent-requests/{consent_challenge}/reject")
    assert rejected.status_code == 200
    params = callback_params(rejected.json()["redirect_to"], request.target)
    assert params["error"] == "access_denied" and "code" not in params


def test_consent_for_a_debtor_out_of_reach_is_refused(
    auth_server: AuthServer, frontend: httpx.Client, browser: Callable[..., Browser],
    new_user: Callable[..., User], new_app: Callable[..., Client],
) -> None:
    agent, user, request = browser(), new_user(), AuthRequest(new_app())
    consent_challenge = _challenge(agent.log_in(request, user), "consent_challenge")
    other_debtor = auth_server.demo["debtors"][1]
    refused = frontend.post(
        f"/oauth2/consent-requests/{consent_challenge}/accept",
        json={"debtor_id": other_debtor["id"],
              "company_ids": [other_debtor["companies"][0]["id"]]},
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("who", ["nobody", "partner", "wrong_secret"])
def test_only_first_party_clients_may_use_the_api(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    who: str,
) -> None:
    request = AuthRequest(new_app())
    login_challenge = _challenge(browser().authorize(request), "login_challenge")
    first_party, partner = auth_server.clients["first_party"], auth_server.clients["basic"]
    auth = {"nobody": None, "partner": (partner.client_id, partner.secret),
            "wrong_secret": (first_party.client_id, "kps_wrong")}[who]
    response = httpx.get(f"{auth_server.url}/oauth2/login-requests/{login_challenge}", auth=auth)
    assert response.status_code == 401
    assert "Basic" in response.headers["www-authenticate"]
