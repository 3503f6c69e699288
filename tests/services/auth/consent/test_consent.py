"""The consent page and its POST (SECURITY.md line 15), remembered and incremental
consent (SPEC 5.2 step 4), and what a connection covers (SPEC section 3)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlmodel import select

from shared.db.types import utcnow
from shared.models import App, Connection, ConnectionCompany, ConnectionStatus
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    Tree,
    User,
    callback_params,
    exchange,
    only_form,
    parse_page,
    shown_scopes,
)


@dataclass
class Linked:
    connection: Connection
    companies: set[str]


def connections(server: AuthServer, client: Client) -> list[Linked]:
    """The connections made to the app, with the companies each covers."""
    with server.sessions() as session:
        app_id = session.exec(select(App.id).where(App.client_id == client.client_id)).one()
        rows = session.exec(select(Connection).where(Connection.app_id == app_id)).all()
        return [
            Linked(row, {str(c) for c in session.exec(
                select(ConnectionCompany.company_id)
                .where(ConnectionCompany.connection_id == row.id)).all()})
            for row in rows
        ]


def consent_page(agent: Browser, request: AuthRequest) -> httpx.Response:
    page = agent.follow(agent.authorize(request))
    assert page.status_code == 200 and "/consent" in str(page.url), page.text[:300]
    return page


def assert_refused(response: httpx.Response) -> None:
    """Refused with nothing for the app; 422 is FastAPI's answer to a missing field."""
    assert response.status_code in (400, 422), (response.status_code, response.text[:300])
    assert "location" not in response.headers


# ---- Line 15: the consent POST -------------------------------------------------------


def test_line15_consent_post_with_foreign_csrf_token_is_refused(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    mine = consent_page(agent, AuthRequest(client))
    other = consent_page(agent, AuthRequest(client))  # a second request, same browser
    foreign = only_form(other).value("csrf_token")
    assert foreign != only_form(mine).value("csrf_token")
    for token in (foreign, "", "x" * 32):
        assert_refused(agent.submit(mine, decision="allow", csrf_token=token))
    assert_refused(agent.submit(mine, decision="allow", csrf_token=None))
    assert connections(auth_server, client) == []
    # The request itself is intact: with its own token it goes through.
    response = agent.submit(mine, decision="allow")
    assert response.status_code == 303
    assert "code" in callback_params(response.headers["location"], client.redirect_uri)


def test_line15_consent_post_from_another_site_without_cookies_is_refused(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    """A cross-site form POST carries no SameSite=Lax cookies."""
    client = new_app()
    agent = browser(signed_in=True)
    page = consent_page(agent, AuthRequest(client))
    # The cookie that binds the request to the browser stays home on cross-site POSTs.
    set_cookie = browser().authorize(AuthRequest(client)).headers["set-cookie"].lower()
    assert set_cookie.startswith("koppel_browser=")
    assert "samesite=lax" in set_cookie and "httponly" in set_cookie
    form = only_form(page)
    response = httpx.post(f"{auth_server.url}/consent",
                          data={**dict(form.fields), "decision": "allow"})
    assert_refused(response)
    assert connections(auth_server, client) == []


@pytest.mark.parametrize("keep", ["nothing", "session_only", "browser_only"])
def test_line15_consent_post_from_another_browser_is_refused(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    keep: str,
) -> None:
    """The challenge and CSRF token are useless outside the browser that got them, even
    with the same login session."""
    client = new_app()
    victim = browser(signed_in=True)
    page = consent_page(victim, AuthRequest(client))
    other = browser(signed_in=keep == "session_only")
    if keep == "browser_only":
        other.http.cookies.set("koppel_browser", victim.http.cookies["koppel_browser"])
    response = other.http.post("/consent", data={**dict(only_form(page).fields),
                                                 "decision": "allow"})
    assert_refused(response)
    assert connections(auth_server, client) == []


def test_line15_posted_scope_is_ignored(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()  # registers payment and more, but asks for employee info only
    request = AuthRequest(client, scope="employee.info.read")
    agent = browser(signed_in=True)
    page = consent_page(agent, request)
    assert shown_scopes(page) == ["employee.info.read"]
    wider = "employee.info.read employee.payment.read company.info.read offline_access"
    response = agent.submit(page, decision="allow", scope=wider, scopes=wider.split(),
                            requested_scope=wider)
    assert response.status_code == 303
    code = callback_params(response.headers["location"], client.redirect_uri)["code"]
    (linked,) = connections(auth_server, client)
    assert linked.connection.scopes == ["employee.info.read"]
    tokens = exchange(auth_server, request, code).json()
    assert tokens["scope"] == "employee.info.read"
    assert "refresh_token" not in tokens


def tampered(case: str, tree: Tree) -> dict[str, object]:
    """Debtor and company fields for a user of debtor 0 who has company 0 only."""
    (debtor, (company, sibling)), (other_debtor, (other_company, _)) = tree.debtors
    return {
        "debtor_outside_reach": {"debtor_id": other_debtor, "company_id": [other_company]},
        "company_of_another_debtor": {"debtor_id": debtor, "company_id": [other_company]},
        "sibling_company_not_the_users": {"debtor_id": debtor, "company_id": [sibling]},
        "one_good_one_foreign_company": {"debtor_id": debtor,
                                         "company_id": [company, other_company]},
        "no_company": {"debtor_id": debtor, "company_id": None},
        "unknown_debtor": {"debtor_id": str(uuid.uuid4()), "company_id": [company]},
        "malformed_debtor": {"debtor_id": "1 OR 1=1", "company_id": [company]},
        "malformed_company": {"debtor_id": debtor, "company_id": ["../" + company]},
    }[case]


@pytest.mark.parametrize("case", [
    "debtor_outside_reach", "company_of_another_debtor", "sibling_company_not_the_users",
    "one_good_one_foreign_company", "no_company", "unknown_debtor", "malformed_debtor",
    "malformed_company",
])
def test_line15_tampered_debtor_or_company_is_refused(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    demo_tree: Tree, case: str,
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    page = consent_page(agent, AuthRequest(client))
    form = only_form(page)
    # The page offers the user's own debtor and company only.
    assert form.values("debtor_id") == [demo_tree.debtors[0][0]]
    assert form.values("company_id") == [demo_tree.debtors[0][1][0]]
    response = agent.submit(page, decision="allow", **tampered(case, demo_tree))
    assert_refused(response)
    assert "code=" not in response.text
    assert connections(auth_server, client) == []


def test_connection_covers_the_companies_the_master_client_picks(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    new_user: Callable[..., User], demo_tree: Tree,
) -> None:
    client = new_app()
    agent = browser()
    user = new_user("master_client")
    page = agent.follow(agent.log_in(AuthRequest(client), user))
    debtor, companies = demo_tree.debtors[0]
    # A master client reaches every company of its debtor: all are offered.
    assert sorted(only_form(page).values("company_id")) == sorted(companies)
    response = agent.submit(page, decision="allow", company_id=[companies[1]])
    assert response.status_code == 303
    (linked,) = connections(auth_server, client)
    assert linked.companies == {companies[1]}
    assert str(linked.connection.debtor_id) == debtor
    assert str(linked.connection.user_id) == user.id


def test_deny_grants_nothing(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    request = AuthRequest(client)
    linked = browser(signed_in=True).link(request, decision="deny")
    assert linked.params["error"] == "access_denied"
    assert linked.params["state"] == request.state
    assert "code" not in linked.params
    assert connections(auth_server, client) == []


# ---- Remembered and incremental consent ---------------------------------------------


def test_remembered_consent_skips_the_page_offline_access_included(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    scope = "employee.info.read company.info.read offline_access"
    agent = browser(signed_in=True)
    first = agent.link(AuthRequest(client, scope=scope))
    assert first.pages == ["consent"]
    assert first.scopes_shown == scope.split()

    again = AuthRequest(client, scope=scope)
    second = agent.link(again)
    assert second.pages == []
    tokens = exchange(auth_server, again, second.params["code"]).json()
    assert tokens["scope"] == scope
    assert "refresh_token" in tokens
    # A subset of what was granted needs no page either.
    assert agent.link(AuthRequest(client, scope="company.info.read")).pages == []
    assert len(connections(auth_server, client)) == 1


def test_write_scope_granted_covers_its_read_scope(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app(scopes=("employee.info", "employee.info.read"))
    agent = browser(signed_in=True)
    assert agent.link(AuthRequest(client, scope="employee.info")).pages == ["consent"]
    assert agent.link(AuthRequest(client, scope="employee.info.read")).pages == []


def test_incremental_consent_shows_only_the_new_scopes(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    agent.link(AuthRequest(client, scope="employee.info.read offline_access"))
    wider = AuthRequest(client, scope="employee.info.read offline_access employee.payment.read")
    page = consent_page(agent, wider)
    assert shown_scopes(page) == ["employee.payment.read"]
    assert "You linked" in page.text  # worded as an addition to an earlier link
    response = agent.submit(page, decision="allow")
    code = callback_params(response.headers["location"], client.redirect_uri)["code"]
    (linked,) = connections(auth_server, client)
    assert sorted(linked.connection.scopes) == sorted(wider.scope.split())
    assert exchange(auth_server, wider, code).json()["scope"] == wider.scope


def test_denied_addition_keeps_the_earlier_consent(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    agent.link(AuthRequest(client, scope="employee.info.read"))
    denied = agent.link(AuthRequest(client, scope="employee.info.read employee.payment.read"),
                        decision="deny")
    assert denied.params["error"] == "access_denied"
    (linked,) = connections(auth_server, client)
    assert linked.connection.scopes == ["employee.info.read"]
    assert agent.link(AuthRequest(client, scope="employee.info.read")).pages == []


def test_revoked_connection_is_not_remembered(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    agent.link(AuthRequest(client))
    (linked,) = connections(auth_server, client)
    with auth_server.sessions() as session, session.begin():
        row = session.get(Connection, linked.connection.id)
        row.status, row.revoked_at = ConnectionStatus.REVOKED, utcnow()
    again = agent.link(AuthRequest(client))
    assert again.pages == ["consent"]
    statuses = sorted(c.connection.status for c in connections(auth_server, client))
    assert statuses == [ConnectionStatus.ACTIVE, ConnectionStatus.REVOKED]


def test_consent_page_shows_the_app_and_what_it_asks(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app(name="Salary Sync", publisher="Sync Works B.V.")
    page = consent_page(browser(signed_in=True),
                        AuthRequest(client, scope="employee.payment.read offline_access"))
    text = page.text
    assert "Salary Sync" in text and "Sync Works B.V." in text
    assert shown_scopes(page) == ["employee.payment.read", "offline_access"]
    assert "View salary and wage components" in text
    assert "sensitive" in text
    assert only_form(page).buttons == [("decision", "deny"),
                                                    ("decision", "allow")]
    assert "https://partner.example" in parse_page(text).links
