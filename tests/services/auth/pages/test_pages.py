"""The HTML pages (SECURITY.md line 14): none may be framed, leak a referrer or load
anything from a third party (app logos included)."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from tests.fixtures.auth_server import FOREIGN_LOGO, AuthServer, Client
from tests.services.auth.support import AuthRequest, Browser, User, only_form, parse_page


def csp_directives(response: httpx.Response) -> dict[str, list[str]]:
    policy = response.headers["content-security-policy"]
    return {parts[0]: parts[1:] for parts in (d.split() for d in policy.split(";")) if parts}


def assert_safe_page(response: httpx.Response, server: AuthServer) -> None:
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    directives = csp_directives(response)
    assert directives["frame-ancestors"] == ["'none'"]
    # The policy itself allows no other origin for anything.
    assert directives["default-src"] == ["'none'"]
    for sources in directives.values():
        assert set(sources) <= {"'self'", "'none'"}, directives
    assert "no-store" in response.headers["cache-control"]
    page = parse_page(response.text)
    for asset in page.assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        fetched = httpx.get(server.url + asset)
        assert fetched.status_code == 200, asset
        assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", fetched.text), asset
    assert FOREIGN_LOGO not in response.text
    assert "<script" not in response.text.lower()
    assert " style=" not in response.text.lower()  # inline styles would need 'unsafe-inline'


@pytest.fixture
def pages(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_app: Callable[..., Client],
) -> dict[str, httpx.Response]:
    """One of every page the service draws."""
    client = new_app()  # with a third-party logo_uri
    found: dict[str, httpx.Response] = {}
    agent = browser()
    login = agent.follow(agent.authorize(AuthRequest(client)))
    found["login"] = login
    found["login_failed"] = agent.login(login, new_user(), password="wrong")
    consenting = browser(signed_in=True)
    found["consent"] = consenting.follow(consenting.authorize(AuthRequest(client)))
    found["authorize_error"] = agent.authorize(AuthRequest(client, redirect_uri="https://x.test"))
    found["bad_challenge"] = agent.http.get("/login", params={"login_challenge": "kpch_nope"})
    employee = browser()
    found["may_not_link"] = employee.follow(employee.log_in(AuthRequest(client),
                                                           new_user("employee")))
    found["logged_out"] = employee.http.post("/logout")
    expected = {"login": 200, "login_failed": 401, "consent": 200, "authorize_error": 400,
                "bad_challenge": 400, "may_not_link": 403, "logged_out": 200}
    assert {name: r.status_code for name, r in found.items()} == expected
    return found


def test_line14_pages_cannot_be_framed_and_load_nothing_from_third_parties(
    auth_server: AuthServer, pages: dict[str, httpx.Response],
) -> None:
    for name, response in pages.items():
        try:
            assert_safe_page(response, auth_server)
        except AssertionError as exc:
            raise AssertionError(f"the {name} page: {exc}") from exc
    # The app's own links on the consent page: no referrer, no opener.
    anchors = re.findall(r"<a [^>]*href=\"https?://[^>]*>", pages["consent"].text)
    assert anchors
    for anchor in anchors:
        assert 'rel="noopener noreferrer"' in anchor, anchor


def test_line14_rate_limited_login_page_is_safe_too(
    auth_server: AuthServer, browser: Callable[..., Browser], fresh_address: Callable[[], str],
) -> None:
    agent = browser(fresh_address())
    request = AuthRequest(auth_server.clients["first_party"], scope="openid")
    page = agent.follow(agent.authorize(request))
    email = "locked-out@example.test"
    response = page
    for _ in range(auth_server.limits["per_account"] + 1):
        response = agent.submit(page, username=email, password="wrong")
    assert response.status_code == 429
    assert_safe_page(response, auth_server)


def test_line14_values_from_the_request_are_escaped(
    auth_server: AuthServer, browser: Callable[..., Browser],
) -> None:
    """What a crafted link puts into a page stays text (the CSP is the second line)."""
    probe = '"><script>alert(1)</script><img src="https://evil.test/x.png">'
    agent = browser()
    client = auth_server.clients["basic"]
    error_page = agent.authorize(AuthRequest(client, redirect_uri="https://x.test/" + probe))
    login_page = agent.follow(agent.authorize(AuthRequest(client), login_hint=probe))
    assert error_page.status_code == 400 and login_page.status_code == 200
    for response in (error_page, login_page):
        assert "<script" not in response.text
        assert "evil.test" not in "".join(parse_page(response.text).assets)
    assert probe in dict(only_form(login_page).fields).values()  # kept, as a value
