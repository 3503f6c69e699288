"""Renewing an expired connection when the app asks again (issue 19 item 1): the consent
page and the challenge API say "renew" with the connection's own scopes and companies;
confirming makes the same connection active with a new expiry; the page never renews by
itself, and a Dutch page says it in Dutch. (The whole flow, with the registry, the
worker's job and a sync call: tests/services/registry/test_consent_lifetime_e2e.py.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlmodel import select

from shared.db.types import utcnow
from shared.models import App, AuditEvent, Connection, ConnectionStatus, Environment, Event
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import AuthRequest, Browser, User, callback_params, exchange

SCOPE = "company.info.read employee.info.read"


def _expire(server: AuthServer, client: Client) -> Connection:
    """The app's one connection, as the expiry job leaves it (status expired)."""
    with server.sessions() as session, session.begin():
        app_id = session.exec(select(App.id).where(App.client_id == client.client_id)).one()
        connection = session.exec(select(Connection).where(Connection.app_id == app_id)).one()
        connection.status = ConnectionStatus.EXPIRED
        connection.expires_at = utcnow() - timedelta(minutes=1)
        session.add(connection)
    return connection


def _reload(server: AuthServer, connection: Connection) -> Connection:
    with server.sessions() as session:
        row = session.get(Connection, connection.id)
        assert row is not None
        return row


def test_the_page_says_renew_and_confirming_renews_the_same_connection(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_app: Callable[..., Client],
) -> None:
    agent, user, app = browser(), new_user(), new_app()
    first = agent.link(AuthRequest(app, scope=SCOPE), user)
    assert "code" in first.params
    expired = _expire(auth_server, app)
    with auth_server.sessions() as session, session.begin():
        environment = session.get(Environment, expired.environment_id)
        assert environment is not None
        lifetime = environment.consent_lifetime_days

    request = AuthRequest(app, scope=SCOPE)
    page = agent.http.get(agent.authorize(request).headers["location"],
                          headers={"Accept-Language": "nl"})
    assert page.status_code == 200
    assert "data-renew" in page.text and "Verlengen" in page.text
    assert 'name="company_id"' not in page.text  # the same companies, not a new choice
    assert _reload(auth_server, expired).status == ConnectionStatus.EXPIRED

    answer = agent.submit(page, decision="allow")
    params = callback_params(answer.headers["location"], request.target)
    assert exchange(auth_server, request, params["code"]).status_code == 200
    renewed = _reload(auth_server, expired)
    assert renewed.status == ConnectionStatus.ACTIVE and renewed.id == expired.id
    assert renewed.renewed_at is not None
    # The demo environment has no lifetime (unless another test set one): no expiry.
    assert (renewed.expires_at is None) == (lifetime is None)
    with auth_server.sessions() as session:
        assert session.exec(select(Event.type).where(
            Event.connection_id == expired.id, Event.type == "connection.renewed")).one()
        assert session.exec(select(AuditEvent).where(
            AuditEvent.action == "connection.renewed",
            AuditEvent.subject_id == str(expired.id))).one()


def test_denying_the_renewal_leaves_it_expired(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_app: Callable[..., Client],
) -> None:
    agent, user, app = browser(), new_user(), new_app()
    agent.link(AuthRequest(app, scope=SCOPE), user)
    expired = _expire(auth_server, app)
    request = AuthRequest(app, scope=SCOPE)
    page = agent.follow(agent.authorize(request))
    assert "data-renew" in page.text
    answer = agent.submit(page, decision="deny")
    assert callback_params(answer.headers["location"], request.target)["error"] == \
        "access_denied"
    assert _reload(auth_server, expired).status == ConnectionStatus.EXPIRED


def test_the_challenge_api_asks_for_a_renewal(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_app: Callable[..., Client],
) -> None:
    agent, user, app = browser(), new_user(), new_app()
    agent.link(AuthRequest(app, scope=SCOPE), user)
    expired = _expire(auth_server, app)
    request = AuthRequest(app, scope=SCOPE)
    location = agent.authorize(request).headers["location"]
    challenge = parse_qs(urlsplit(location).query)["consent_challenge"][0]
    first_party = auth_server.clients["first_party"]
    with httpx.Client(base_url=auth_server.url, timeout=30,
                      auth=(first_party.client_id, first_party.secret)) as frontend:
        asked = frontend.get(f"/oauth2/consent-requests/{challenge}")
        assert asked.status_code == 200, asked.text
        body = asked.json()
        assert body["renew"] is True
        assert sorted(s["scope"] for s in body["scopes"]) == sorted(SCOPE.split())
        [debtor] = body["debtors"]
        assert debtor["id"] == str(expired.debtor_id)
        accepted = frontend.post(f"/oauth2/consent-requests/{challenge}/accept", json={
            "debtor_id": debtor["id"], "company_ids": [debtor["companies"][0]["id"]]})
        assert accepted.status_code == 200, accepted.text
    params = callback_params(accepted.json()["redirect_to"], request.target)
    assert "code" in params
    assert _reload(auth_server, expired).status == ConnectionStatus.ACTIVE


def _past_expiry(server: AuthServer, client: Client) -> Connection:
    """The app's one connection past its expiry, still `active`: the worker's expiry
    job (once a minute) has not turned it yet."""
    with server.sessions() as session, session.begin():
        app_id = session.exec(select(App.id).where(App.client_id == client.client_id)).one()
        connection = session.exec(select(Connection).where(Connection.app_id == app_id)).one()
        connection.expires_at = utcnow() - timedelta(seconds=5)
        session.add(connection)
    assert connection.status == ConnectionStatus.ACTIVE
    return connection


def test_a_link_past_its_expiry_is_renewed_before_the_job_marks_it(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_app: Callable[..., Client],
) -> None:
    """Found by review: remembered consent issued a code for it that the token endpoint
    then refused ("There is no 'user' for this code"); prompt=none got a code too."""
    agent, user, app = browser(), new_user(), new_app()
    agent.link(AuthRequest(app, scope=SCOPE), user)
    past = _past_expiry(auth_server, app)

    silent = agent.link(AuthRequest(app, scope=SCOPE, extra={"prompt": "none"}))
    assert silent.params.get("error") == "consent_required", silent.location

    request = AuthRequest(app, scope=SCOPE)
    page = agent.follow(agent.authorize(request))
    assert page.status_code == 200 and "data-renew" in page.text, page.text[:300]
    answer = agent.submit(page, decision="allow")
    params = callback_params(answer.headers["location"], request.target)
    assert exchange(auth_server, request, params["code"]).status_code == 200
    renewed = _reload(auth_server, past)
    assert renewed.status == ConnectionStatus.ACTIVE and renewed.renewed_at is not None
    assert renewed.expires_at is None or renewed.expires_at > utcnow()
    with auth_server.sessions() as session:
        audit = session.exec(select(AuditEvent).where(
            AuditEvent.action == "connection.renewed",
            AuditEvent.subject_id == str(past.id))).one()
        event = session.exec(select(Event).where(
            Event.connection_id == past.id, Event.type == "connection.renewed")).one()
    assert audit.details["previous_status"] == "active"
    assert event.data["changed_fields"] == ["expires_at"]


def test_widening_a_link_past_its_expiry_renews_it_first(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_app: Callable[..., Client],
) -> None:
    """Found by review: the widening kept the past expiry, so its code could not be used."""
    agent, user, app = browser(), new_user(), new_app()
    agent.link(AuthRequest(app, scope="employee.info.read"), user)
    past = _past_expiry(auth_server, app)

    request = AuthRequest(app, scope="employee.info.read company.info.read")
    page = agent.follow(agent.authorize(request))
    assert page.status_code == 200 and "data-renew" in page.text, page.text[:300]
    widening = agent.submit(page, decision="allow")
    assert widening.status_code == 200 and "data-renew" not in widening.text
    answer = agent.submit(widening, decision="allow")
    params = callback_params(answer.headers["location"], request.target)
    assert exchange(auth_server, request, params["code"]).status_code == 200
    widened = _reload(auth_server, past)
    assert set(widened.scopes) == {"employee.info.read", "company.info.read"}
    assert widened.expires_at is None or widened.expires_at > utcnow()
