"""A real browser (Debian's chromium through Playwright) on the login and consent pages.

The app's redirect URI is answered by Playwright itself (page.route), so the test sees
exactly where the browser is sent. Without chromium these tests fail in CI and skip
locally.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.fixtures.auth_server import CALLBACK, AuthServer, Client
from tests.services.auth.support import AuthRequest, User, callback_params, exchange

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking"]
APP_ORIGIN = "http://127.0.0.1:9999"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context whose requests to the app's origin Playwright answers."""
    context = chromium.new_context(locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    context.route(f"{APP_ORIGIN}/**", lambda route: route.fulfill(
        status=200, content_type="text/html", body="<p>the partner app</p>"))
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


def log_in(page: Any, server: AuthServer, request: AuthRequest, user: User) -> None:
    page.goto(f"{server.url}/authorize?{urlencode(request.params())}")
    page.wait_for_url("**/login?**")
    page.fill("#username", user.email)
    page.fill("#password", user.password)
    page.click("form button[type=submit]")
    page.wait_for_url("**/consent?**")


def test_user_logs_in_sees_scopes_and_allows(
    auth_server: AuthServer, page: Any, new_user: Callable[..., User],
    new_app: Callable[..., Client],
) -> None:
    client = new_app(name="Rooster Planner")
    request = AuthRequest(client, scope="employee.info.read employee.payment.read")
    log_in(page, auth_server, request, new_user())
    assert "Rooster Planner" in page.title()
    assert page.locator("[data-scope]").evaluate_all(
        "items => items.map(i => i.dataset.scope)") == ["employee.info.read",
                                                        "employee.payment.read"]
    assert page.get_by_text("View employee personal details").is_visible()
    assert page.get_by_text("View salary and wage components").is_visible()
    # The stylesheet loads under the page's CSP (it is Koppel's own).
    assert page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth") != "none"

    page.click("button[value=allow]")
    page.wait_for_url(f"{CALLBACK}?**")
    params = callback_params(page.url, CALLBACK)
    assert params["state"] == request.state
    assert params["iss"] == auth_server.url
    response = exchange(auth_server, request, params["code"])
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == request.scope


def test_user_denies(
    auth_server: AuthServer, page: Any, new_user: Callable[..., User],
    new_app: Callable[..., Client],
) -> None:
    request = AuthRequest(new_app())
    log_in(page, auth_server, request, new_user())
    page.click("button[value=deny]")
    page.wait_for_url(f"{CALLBACK}?**")
    params = callback_params(page.url, CALLBACK)
    assert params["error"] == "access_denied"
    assert params["state"] == request.state
    assert params["iss"] == auth_server.url
    assert "code" not in params


def test_line14_login_page_refuses_to_be_framed_in_a_browser(
    auth_server: AuthServer, page: Any
) -> None:
    """SECURITY.md line 14 in a browser: another site cannot frame the pages."""
    login = f"{auth_server.url}/login?login_challenge=kpch_x"
    page.route(f"{APP_ORIGIN}/framer", lambda route: route.fulfill(
        status=200, content_type="text/html",
        body=f'<iframe id="f" src="{login}" width="400" height="300"></iframe>'))
    page.goto(f"{APP_ORIGIN}/framer")
    page.wait_for_load_state("load")
    (frame,) = page.frames[1:]
    assert "This link does not work" not in frame.content()
    # Opened directly, the same page shows.
    page.goto(login)
    assert "This link does not work" in page.content()


def _png() -> bytes:
    """A real 2x2 PNG (so the browser decodes it and the test can see it drawn)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + b"\x20\x60\xc0" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_the_consent_page_says_what_a_person_needs_to_decide(
    auth_server: AuthServer, page: Any, new_user: Callable[..., User],
    new_app: Callable[..., Client], new_tree: Callable[..., Any],
) -> None:
    """Issue 19 item 6 on the rendered page: who is logged in and "use another account"
    (back to the login of the same request, then its consent for the other user); the
    logo Koppel serves, the publisher, privacy policy and terms; how long the consent
    lasts; where to revoke it."""
    import hashlib
    import uuid

    from sqlmodel import select

    from shared.models import App, AppLogo, Connection, Environment

    tree = new_tree()
    with auth_server.sessions() as session, session.begin():
        environment = session.get(Environment, uuid.UUID(tree.environment_id))
        environment.consent_lifetime_days = 90
        session.add(environment)
    first, second = new_user(tree=tree), new_user(tree=tree)
    client = new_app(name="Rooster Planner", publisher="Planner B.V.",
                     policy_uri="https://planner.example/privacy",
                     tos_uri="https://planner.example/terms")
    logo = _png()
    with auth_server.sessions() as session, session.begin():
        app = session.exec(select(App).where(App.client_id == client.client_id)).one()
        app_id = app.id
        session.add(AppLogo(app_id=app.id, content_type="image/png", data=logo,
                            sha256=hashlib.sha256(logo).hexdigest(),
                            source_uri=app.logo_uri or ""))
    # Anything the page would load from elsewhere shows up here.
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(auth_server.url)
            else foreign.append(r.url))
    request = AuthRequest(client, scope="employee.info.read")
    log_in(page, auth_server, request, first)
    challenge = page.url.split("consent_challenge=")[1]

    assert page.locator("[data-user]").inner_text().startswith("Logged in as ")
    assert first.email in page.locator("[data-user]").inner_text()
    image = page.locator("img[data-logo]")
    assert image.get_attribute("src") == f"/apps/{client.client_id}/logo"
    assert image.get_attribute("alt") == "Logo of Rooster Planner"
    assert image.evaluate("i => i.complete && i.naturalWidth") == 2  # drawn, from Koppel
    assert page.get_by_text("Published by Planner B.V.").is_visible()
    for name, href in (("Privacy policy", "https://planner.example/privacy"),
                       ("Terms of use", "https://planner.example/terms")):
        link = page.get_by_role("link", name=name)
        assert link.get_attribute("href") == href
        assert link.get_attribute("rel") == "noopener noreferrer"
    lifetime = page.locator("[data-lifetime]")
    assert lifetime.inner_text().startswith("This link lasts 90 days, until ")
    assert page.get_by_text("You can revoke it at any time in Manage apps.").is_visible()
    assert foreign == []

    page.click("#switch-account")
    page.wait_for_url("**/login?**")
    assert page.url.endswith(f"/login?login_challenge={challenge}")
    page.fill("#username", second.email)
    page.fill("#password", second.password)
    page.click("form button[type=submit]")
    page.wait_for_url("**/consent?**")
    assert page.url.endswith(f"consent_challenge={challenge}")
    assert second.email in page.locator("[data-user]").inner_text()
    page.click("button[value=allow]")
    page.wait_for_url(f"{CALLBACK}?**")
    params = callback_params(page.url, CALLBACK)
    assert exchange(auth_server, request, params["code"]).status_code == 200
    with auth_server.sessions() as session:
        owners = session.exec(select(Connection.user_id).where(
            Connection.app_id == app_id)).all()
    assert [str(o) for o in owners] == [second.id]
