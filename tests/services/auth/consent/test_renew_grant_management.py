"""A Grant Management request for an expired grant (found by review): after the user
renews the link, the request goes on as for a live one. A `replace` that drops scopes
shows what goes and applies it (the grant narrows, the old token families end); a code
issued right after the renewal carries the whole grant, like any merge."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx

from shared.db.types import utcnow
from shared.models import Connection, ConnectionStatus
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    callback_params,
    exchange,
    obtain_tokens,
    refresh,
)

GRANTED = "employee.info.read employee.payment.read offline_access"


def _grant(scope: str, client: Client, action: str, grant_id: str | None = None,
           **extra: str) -> AuthRequest:
    params = {"grant_management_action": action, **extra}
    if grant_id is not None:
        params["grant_id"] = grant_id
    return AuthRequest(client, scope=scope, extra=params)


def _expire(server: AuthServer, grant_id: str) -> None:
    """The grant as the worker's expiry job leaves it."""
    with server.sessions() as session, session.begin():
        connection = session.get(Connection, uuid.UUID(grant_id))
        assert connection is not None
        connection.status = ConnectionStatus.EXPIRED
        connection.expires_at = utcnow() - timedelta(minutes=1)


def _connection(server: AuthServer, grant_id: str) -> Connection:
    with server.sessions() as session:
        row = session.get(Connection, uuid.UUID(grant_id))
        assert row is not None
        return row


def _dropped(page: httpx.Response) -> list[str]:
    return re.findall(r'data-dropped-scope="([^"]+)"', page.text)


def _renewal_page(agent: Browser, request: AuthRequest) -> httpx.Response:
    page = agent.follow(agent.authorize(request))
    assert page.status_code == 200 and "data-renew" in page.text, page.text[:300]
    return page


def test_a_replace_of_an_expired_grant_shows_what_goes_and_applies_it(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    first = obtain_tokens(auth_server, agent, _grant(GRANTED, client, "create"), None)
    grant_id = first["grant_id"]
    _expire(auth_server, grant_id)

    replace = _grant("employee.info.read offline_access", client, "replace", grant_id)
    renewed = agent.submit(_renewal_page(agent, replace), decision="allow")
    # Renewed; the replace still changes the grant, so the user is asked about it.
    assert renewed.status_code == 200, (renewed.status_code, renewed.headers)
    assert "data-renew" not in renewed.text
    assert _dropped(renewed) == ["employee.payment.read"]
    assert _connection(auth_server, grant_id).status == ConnectionStatus.ACTIVE

    answer = agent.submit(renewed, decision="allow")
    code = callback_params(answer.headers["location"], client.redirect_uri)["code"]
    tokens = exchange(auth_server, replace, code).json()
    assert tokens["grant_id"] == grant_id
    assert tokens["scope"] == "employee.info.read offline_access"
    assert _connection(auth_server, grant_id).scopes == ["employee.info.read", "offline_access"]
    # The tokens issued before carry the dropped scope: their family ended.
    old = refresh(auth_server, client, first["refresh_token"])
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant", old.text
    assert refresh(auth_server, client, tokens["refresh_token"]).status_code == 200


def test_denying_the_replace_after_the_renewal_keeps_the_renewed_grant(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    grant_id = obtain_tokens(auth_server, agent, _grant(GRANTED, client, "create"),
                             None)["grant_id"]
    _expire(auth_server, grant_id)
    replace = _grant("employee.info.read offline_access", client, "replace", grant_id)
    renewed = agent.submit(_renewal_page(agent, replace), decision="allow")
    answer = agent.submit(renewed, decision="deny")
    assert callback_params(answer.headers["location"], client.redirect_uri)["error"] == \
        "access_denied"
    connection = _connection(auth_server, grant_id)
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.scopes == GRANTED.split()


def test_a_code_right_after_the_renewal_carries_the_whole_grant(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    """prompt=consent asked for the page, the renewal was that consent: a code at once,
    and for a merge its tokens carry the whole grant, not only what was asked."""
    client = new_app()
    agent = browser(signed_in=True)
    grant_id = obtain_tokens(auth_server, agent, _grant(GRANTED, client, "create"),
                             None)["grant_id"]
    _expire(auth_server, grant_id)
    merge = _grant("employee.info.read", client, "merge", grant_id, prompt="consent")
    answer = agent.submit(_renewal_page(agent, merge), decision="allow")
    code = callback_params(answer.headers["location"], client.redirect_uri)["code"]
    tokens = exchange(auth_server, merge, code).json()
    assert tokens["grant_id"] == grant_id
    assert set(tokens["scope"].split()) == set(GRANTED.split())
    assert _connection(auth_server, grant_id).status == ConnectionStatus.ACTIVE


def test_a_custom_consent_ui_renews_then_asks_about_the_replace(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    """The challenge API: accepting the renewal renews the link but issues no code while
    the replace is not consented to; read again, the request shows what goes."""
    client = new_app()
    agent = browser(signed_in=True)
    first = obtain_tokens(auth_server, agent, _grant(GRANTED, client, "create"), None)
    grant_id = first["grant_id"]
    _expire(auth_server, grant_id)
    replace = _grant("employee.info.read offline_access", client, "replace", grant_id)
    started = agent.authorize(replace)
    challenge = parse_qs(urlsplit(started.headers["location"]).query)["consent_challenge"][0]
    first_party = auth_server.clients["first_party"]
    with httpx.Client(base_url=auth_server.url, timeout=30,
                      auth=(first_party.client_id, first_party.secret)) as frontend:
        asked = frontend.get(f"/oauth2/consent-requests/{challenge}").json()
        assert asked["renew"] is True
        debtor = asked["debtors"][0]
        accept = {"debtor_id": debtor["id"], "company_ids": [debtor["companies"][0]["id"]]}
        renewed = frontend.post(f"/oauth2/consent-requests/{challenge}/accept", json=accept)
        assert renewed.status_code == 422, renewed.text
        assert "read the consent request again" in renewed.json()["detail"]
        assert _connection(auth_server, grant_id).status == ConnectionStatus.ACTIVE
        assert _connection(auth_server, grant_id).scopes == GRANTED.split()
        again = frontend.get(f"/oauth2/consent-requests/{challenge}").json()
        assert again["renew"] is False
        assert [s["scope"] for s in again["dropped_scopes"]] == ["employee.payment.read"]
        granted = frontend.post(f"/oauth2/consent-requests/{challenge}/accept", json=accept)
        assert granted.status_code == 200, granted.text
    code = callback_params(granted.json()["redirect_to"], client.redirect_uri)["code"]
    tokens = exchange(auth_server, replace, code).json()
    assert tokens["scope"] == "employee.info.read offline_access"
    assert _connection(auth_server, grant_id).scopes == ["employee.info.read", "offline_access"]
    assert refresh(auth_server, client, first["refresh_token"]).status_code == 400
