"""What the consent page tells a person before they decide (issue 19 item 6), read from
the HTML the server sends: who is logged in and a way to use another account (which keeps
the pending request: login, then consent, for the other user); the app's logo (served by
Koppel), publisher, privacy policy and terms; how long the consent lasts (the
environment's consent lifetime for these scopes, or until revoked); and where to revoke
it (Manage apps, linked when KOPPEL_MANAGE_APPS_URL is set). The same in a browser:
tests/services/auth/test_browser.py."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import ValidationError
from sqlmodel import select

from shared.config import Settings
from shared.db.types import utcnow
from shared.models import App, AppLogo, Connection, Environment
from shared.models import User as UserRow
from tests.fixtures.auth_server import AuthServer, Client, run_auth_service_in_process
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    Tree,
    User,
    callback_params,
    exchange,
    form_to,
    only_form,
    parse_page,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 32
MANAGE_APPS = "https://saas.example/settings/apps"
LINKS = {"policy_uri": "https://planner.example/privacy",
         "tos_uri": "https://planner.example/terms"}


def _with_logo(server: AuthServer, client: Client) -> None:
    with server.sessions() as session, session.begin():
        row = session.exec(select(App).where(App.client_id == client.client_id)).one()
        session.add(AppLogo(app_id=row.id, content_type="image/png", data=PNG,
                            sha256="0" * 64, source_uri=row.logo_uri or ""))


def _set_lifetime(server: AuthServer, tree: Tree, days: int | None,
                  by_sensitivity: dict[str, int] | None = None) -> None:
    with server.sessions() as session, session.begin():
        environment = session.get(Environment, uuid.UUID(tree.environment_id))
        assert environment is not None
        environment.consent_lifetime_days = days
        environment.consent_lifetime_days_by_sensitivity = by_sensitivity
        session.add(environment)


def _consent_page(agent: Browser, request: AuthRequest, user: User,
                  **headers: str) -> httpx.Response:
    response = agent.log_in(request, user)
    page = agent.http.get(response.headers["location"], headers=headers)
    assert page.status_code == 200 and urlsplit(str(page.url)).path == "/consent", page.text
    return page


def _anchors(html: str) -> dict[str, str]:
    """href -> the whole <a> tag, for every link on the page."""
    return {re.search(r'href="([^"]*)"', tag).group(1): tag  # type: ignore[union-attr]
            for tag in re.findall(r"<a [^>]*>", html)}


def test_the_page_names_the_user_the_app_its_links_and_until_revoked(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_app: Callable[..., Client], new_tree: Callable[..., Tree],
) -> None:
    tree = new_tree()
    user = new_user(tree=tree)
    app = new_app(name="Rooster Planner", publisher="Planner B.V.", **LINKS)
    _with_logo(auth_server, app)
    page = _consent_page(browser(), AuthRequest(app), user)
    html = page.text

    assert f'data-user="{user.email}"' in html
    assert "data-sandbox" not in html  # a customer's environment is never marked a sandbox
    with auth_server.sessions() as session:
        account = session.get(UserRow, uuid.UUID(user.id))
        assert account is not None
    assert f"Logged in as {account.name} ({user.email})." in html
    switch = form_to(page, "/switch-account")
    assert switch.method == "post"
    consent = only_form(page)
    assert switch.value("consent_challenge") == consent.value("consent_challenge")
    assert switch.value("csrf_token") == consent.value("csrf_token")

    logo = f"/apps/{app.client_id}/logo"
    assert logo in parse_page(html).assets
    assert 'alt="Logo of Rooster Planner"' in html
    assert "Published by Planner B.V." in html
    anchors = _anchors(html)
    for uri in LINKS.values():
        assert 'rel="noopener noreferrer"' in anchors[uri], anchors
    assert all(a.startswith("/") for a in parse_page(html).assets)  # nothing third-party

    assert 'data-lifetime="none"' in html
    assert "This link lasts until you revoke it." in html
    assert "You can revoke it at any time in Manage apps." in html
    assert 'id="manage-apps"' not in html  # no KOPPEL_MANAGE_APPS_URL on this server


def test_without_links_the_page_shows_none(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_app: Callable[..., Client],
) -> None:
    app = new_app(client_uri=None, policy_uri=None, tos_uri=None, publisher=None,
                  name="Bare App")
    agent = browser(signed_in=True)
    page = agent.follow(agent.authorize(AuthRequest(app)))
    html = page.text
    assert page.status_code == 200
    assert not _anchors(html) and "/logo" not in html
    assert "Published by Bare App" in html  # the app's name stands in for its publisher


def test_the_page_says_how_long_the_consent_lasts_in_both_languages(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_app: Callable[..., Client], new_tree: Callable[..., Tree],
    new_first_party: Callable[..., Client],
) -> None:
    tree = new_tree()
    # 180 days in general, 60 for personal data: employee.info.read is personal.
    _set_lifetime(auth_server, tree, 180, {"personal": 60})
    user = new_user(tree=tree)
    before = utcnow()
    agent = browser()
    english = _consent_page(agent, AuthRequest(new_app(name="Lon"),
                                               scope="employee.info.read"), user)
    after = utcnow()
    days = {d.date() for d in (before + timedelta(days=60), after + timedelta(days=60))}
    shown = re.search(r'data-lifetime="([^"]+)"', english.text).group(1)  # type: ignore[union-attr]
    assert shown in {d.isoformat() for d in days}
    until = next(d for d in days if d.isoformat() == shown)
    months = ["January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"]
    assert (f"This link lasts 60 days, until {until.day} {months[until.month - 1]} "
            f"{until.year}; after that Lon has to ask you again.") in english.text

    # Only normal data: the general 180 days, in Dutch.
    maanden = ["januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus",
               "september", "oktober", "november", "december"]
    request = AuthRequest(new_app(name="Bedrijf"), scope="company.info.read")
    response = agent.authorize(request)
    dutch = agent.http.get(response.headers["location"], headers={"Accept-Language": "nl"})
    later = re.search(r'data-lifetime="([^"]+)"', dutch.text).group(1)  # type: ignore[union-attr]
    day = (utcnow() + timedelta(days=180)).date()
    assert later in {day.isoformat(), (day - timedelta(days=1)).isoformat()}
    shown_day = day if later == day.isoformat() else day - timedelta(days=1)
    assert (f"Deze koppeling geldt 180 dagen, tot {shown_day.day} "
            f"{maanden[shown_day.month - 1]} {shown_day.year}") in dutch.text
    assert "Je kunt haar altijd intrekken via Apps beheren." in dutch.text
    assert "Ingelogd als" in dutch.text and "Niet jij? Gebruik een ander account" in dutch.text

    # The challenge API says the same to a SaaS consent page.
    challenge = parse_qs(urlsplit(response.headers["location"]).query)["consent_challenge"][0]
    first_party = new_first_party(tree)  # the SaaS frontend of this environment
    asked = httpx.get(f"{auth_server.url}/oauth2/consent-requests/{challenge}",
                      auth=(first_party.client_id, first_party.secret or ""))
    assert asked.status_code == 200, asked.text
    assert asked.json()["expires_at"][:10] == later


def test_switching_account_keeps_the_request_and_links_the_other_user(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_app: Callable[..., Client],
) -> None:
    first, second = new_user(), new_user()
    agent = browser()
    request = AuthRequest(new_app())
    page = _consent_page(agent, request, first)
    old_session = agent.http.cookies["koppel_session"]
    challenge = only_form(page).value("consent_challenge")

    switch = form_to(page, "/switch-account")
    switched = agent.http.post(switch.action, data=dict(switch.fields))
    assert switched.status_code == 303
    assert switched.headers["location"] == f"/login?login_challenge={challenge}"
    assert "koppel_session" not in agent.http.cookies  # the cookie is deleted...
    stale = browser()
    stale.http.cookies.set("koppel_session", old_session)
    # ...and the session ended: its old cookie logs nobody in.
    assert stale.follow(stale.authorize(AuthRequest(new_app()))).url.path == "/login"
    # The consent page of the request no longer opens without a login.
    assert agent.http.get("/consent", params={"consent_challenge": challenge}
                          ).status_code == 400

    login = agent.follow(switched)
    assert login.status_code == 200
    logged_in = agent.login(login, second)
    assert logged_in.headers["location"] == f"/consent?consent_challenge={challenge}"
    again = agent.follow(logged_in)
    assert f'data-user="{second.email}"' in again.text
    assert first.email not in again.text
    answer = agent.submit(again, decision="allow")
    params = callback_params(answer.headers["location"], request.target)
    assert params["state"] == request.state
    assert exchange(auth_server, request, params["code"]).status_code == 200
    with auth_server.sessions() as session:
        owners = session.exec(select(Connection.user_id).join(
            App, App.id == Connection.app_id).where(
            App.client_id == request.client.client_id)).all()
    assert [str(o) for o in owners] == [second.id]


@pytest.mark.parametrize("tamper", ["no_csrf", "wrong_csrf", "other_browser", "no_challenge"])
def test_a_switch_without_its_token_or_from_another_browser_changes_nothing(
    tamper: str, auth_server: AuthServer, browser: Callable[..., Browser],
    new_user: Callable[..., User], new_app: Callable[..., Client],
) -> None:
    agent = browser()
    page = _consent_page(agent, AuthRequest(new_app()), new_user())
    form = form_to(page, "/switch-account")
    data = dict(form.fields)
    sender = agent
    if tamper == "no_csrf":
        data.pop("csrf_token")
    elif tamper == "wrong_csrf":
        data["csrf_token"] = "x" * 32
    elif tamper == "other_browser":
        sender = browser()
    else:
        data["consent_challenge"] = "kpch_nope"
    answer = sender.http.post("/switch-account", data=data)
    assert 400 <= answer.status_code < 500
    # Still logged in, the request still waiting for this user's decision.
    assert "koppel_session" in agent.http.cookies
    assert agent.http.get(str(page.url)).status_code == 200


@pytest.fixture(scope="module")
def manage_apps_server(auth_server: AuthServer, settings: Settings) -> Iterator[AuthServer]:
    """A second auth service on the same database and Redis, with KOPPEL_MANAGE_APPS_URL."""
    database_url = auth_server.engine.url.render_as_string(hide_password=False)
    with run_auth_service_in_process(settings, database_url, auth_server.redis_url,
                                     manage_apps_url=MANAGE_APPS) as url:
        yield dataclasses.replace(auth_server, url=url)


def test_the_page_links_manage_apps_when_configured(
    manage_apps_server: AuthServer, new_user: Callable[..., User],
    new_app: Callable[..., Client],
) -> None:
    agent = Browser(manage_apps_server, "127.0.0.1")
    try:
        page = _consent_page(agent, AuthRequest(new_app()), new_user())
    finally:
        agent.close()
    tag = _anchors(page.text)[MANAGE_APPS]
    assert 'id="manage-apps"' in tag and 'rel="noopener noreferrer"' in tag
    assert ">Manage apps</a>" in page.text


def test_the_manage_apps_setting_is_an_http_url() -> None:
    for bad in ("javascript:alert(1)", "//saas.example/apps", "saas.example"):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, manage_apps_url=bad)
    assert Settings(_env_file=None, manage_apps_url="").manage_apps_url is None
    assert Settings(_env_file=None, manage_apps_url=MANAGE_APPS).manage_apps_url == MANAGE_APPS
