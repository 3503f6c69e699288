"""The consent page shows the app's logo from Koppel itself, never from the partner."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
from sqlmodel import select

from shared.models import App, AppLogo
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import AuthRequest, Browser, parse_page

PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 32


def test_consent_page_shows_the_logo_served_by_koppel(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    app = new_app()
    with auth_server.sessions() as session, session.begin():
        row = session.exec(select(App).where(App.client_id == app.client_id)).one()
        session.add(AppLogo(app_id=row.id, content_type="image/png", data=PNG, sha256="0" * 64,
                            source_uri=row.logo_uri or ""))
    agent = browser(signed_in=True)
    page = agent.follow(agent.authorize(AuthRequest(app)))
    assert page.status_code == 200 and "/consent" in str(page.url)
    logo_path = f"/apps/{app.client_id}/logo"
    assert f'src="{logo_path}"' in page.text
    assets = parse_page(page.text).assets
    assert logo_path in assets and all(a.startswith("/") for a in assets)

    logo = agent.http.get(logo_path)
    assert logo.status_code == 200 and logo.content == PNG
    assert logo.headers["content-type"] == "image/png"
    assert logo.headers["x-content-type-options"] == "nosniff"
    # Its own policy, not the pages' one that the security headers add elsewhere.
    assert logo.headers["content-security-policy"] == "default-src 'none'; sandbox"


def test_an_app_without_logo_has_no_image(auth_server: AuthServer) -> None:
    response = httpx.get(f"{auth_server.url}/apps/{uuid.uuid4()}/logo")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
