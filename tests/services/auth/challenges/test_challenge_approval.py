"""The challenge API's approval state (issue 19 item 3): a SaaS frontend that draws its
own screens learns that the user needs an approval (`state: approval_required`), sends
the user's justification, and sends the browser back to the app with access_denied."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import select

from shared.models import ConsentRequest, Environment, UserTemplate
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.conftest import create_user
from tests.services.auth.support import AuthRequest, Browser, Tree, callback_params


@pytest.fixture
def frontend(auth_server: AuthServer) -> httpx.Client:
    first_party = auth_server.clients["first_party"]
    with httpx.Client(base_url=auth_server.url, auth=(first_party.client_id, first_party.secret),
                      timeout=30) as http:
        yield http


def _challenge(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text[:300]
    return parse_qs(urlsplit(response.headers["location"]).query)["consent_challenge"][0]


def test_an_approval_request_through_the_challenge_api(
    auth_server: AuthServer, browser: Callable[..., Browser], new_tree: Callable[..., Tree],
    new_app: Callable[..., Client], new_first_party: Callable[..., Client],
) -> None:
    tree = new_tree(consent_templates=["master_client"])
    backend = new_first_party(tree)  # the environment's own frontend
    frontend = httpx.Client(base_url=auth_server.url, auth=(backend.client_id, backend.secret),
                            timeout=30)
    with auth_server.sessions() as session, session.begin():
        environment = session.get(Environment, uuid.UUID(tree.environment_id))
        assert environment is not None
        environment.approval_request_templates = ["hr_manager"]
    user = create_user(auth_server, tree, UserTemplate.HR_MANAGER, companies=(0, 1))
    app = new_app()
    request = AuthRequest(app, scope="company.info.read")
    challenge = _challenge(browser().log_in(request, user))

    asked = frontend.get(f"/oauth2/consent-requests/{challenge}")
    assert asked.status_code == 200, asked.text
    body = asked.json()
    assert body["state"] == "approval_required" and body["approval_pending"] is False
    assert [s["scope"] for s in body["scopes"]] == ["company.info.read"]
    assert len(body["debtors"][0]["companies"]) == 2
    # Consent cannot be accepted for it; an empty justification is refused.
    accepted = frontend.post(f"/oauth2/consent-requests/{challenge}/accept", json={
        "debtor_id": tree.debtors[0][0], "company_ids": tree.debtors[0][1]})
    assert accepted.status_code == 422
    empty = frontend.post(f"/oauth2/consent-requests/{challenge}/request-approval",
                          json={"justification": ""})
    assert empty.status_code == 422

    sent = frontend.post(f"/oauth2/consent-requests/{challenge}/request-approval",
                         json={"justification": "For the leave planning."})
    assert sent.status_code == 200, sent.text
    params = callback_params(sent.json()["redirect_to"], request.target)
    assert params["error"] == "access_denied" and "code" not in params
    assert "approval is pending" in params["error_description"]
    # The challenge is used up.
    assert frontend.get(f"/oauth2/consent-requests/{challenge}").status_code == 404
    with auth_server.sessions() as session:
        [row] = session.exec(select(ConsentRequest).where(
            ConsentRequest.user_id == uuid.UUID(str(user.id)))).all()
    assert row.justification == "For the leave planning." and row.status == "pending"
    assert row.scopes == ["company.info.read"]

    # Asked again: the state says one is pending.
    again = _challenge(browser().log_in(AuthRequest(app, scope="company.info.read"), user))
    assert frontend.get(f"/oauth2/consent-requests/{again}").json()["approval_pending"]
    frontend.close()


def test_request_approval_on_a_plain_consent_is_409(
    auth_server: AuthServer, frontend: httpx.Client, browser: Callable[..., Browser],
    new_user: Callable[..., object], new_app: Callable[..., Client],
) -> None:
    request = AuthRequest(new_app())
    challenge = _challenge(browser().log_in(request, new_user()))
    assert frontend.get(f"/oauth2/consent-requests/{challenge}").json()["state"] == "consent"
    refused = frontend.post(f"/oauth2/consent-requests/{challenge}/request-approval",
                            json={"justification": "why not"})
    assert refused.status_code == 409
    assert frontend.get(f"/oauth2/consent-requests/{challenge}").status_code == 200
