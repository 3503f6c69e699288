"""An app's logo is fetched once at registration, through the SSRF guard, and kept."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import select

from shared.models import App, AppLogo, Partner
from shared.vault import KeyRing, TokenKind, new_token, token_digest
from tests.services.registry.conftest import World, bearer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.fixture(scope="module")
def logo_server() -> Iterator[str]:
    """A real HTTP server on loopback that serves a PNG, an SVG and a 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = {"/logo.png": PNG, "/logo.svg": SVG}.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        with contextlib.suppress(Exception):
            server.shutdown()


@pytest.fixture
def initial_token(world: World, keyring: KeyRing) -> str:
    token = new_token(TokenKind.INITIAL_ACCESS_TOKEN)
    with world.sessions() as session:
        session.add(Partner(name="Logo Co",
                            initial_access_token_digest=token_digest(keyring.digest_key, token)))
        session.commit()
    return token


def _metadata(logo_uri: str) -> dict:
    return {"client_name": "Logo App", "redirect_uris": ["https://logo.example/cb"],
            "scope": "company.info.read", "grant_types": ["authorization_code"],
            "logo_uri": logo_uri}


async def test_logo_is_fetched_once_and_stored(
    client: httpx.AsyncClient, world: World, initial_token: str, logo_server: str
) -> None:
    response = await client.post("/oauth2/register", json=_metadata(f"{logo_server}/logo.png"),
                                 headers=bearer(initial_token))
    assert response.status_code == 201, response.text
    with world.sessions() as session:
        app = session.exec(select(App).where(App.client_id == response.json()["client_id"])).one()
        logo = session.get(AppLogo, app.id)
        assert logo is not None and logo.data == PNG and logo.content_type == "image/png"


@pytest.mark.parametrize(("path", "why"), [
    ("/logo.svg", "PNG, JPEG, GIF or WebP"),
    ("/missing.png", "answered 404"),
])
async def test_a_logo_that_is_no_image_is_refused(
    client: httpx.AsyncClient, world: World, initial_token: str, logo_server: str,
    path: str, why: str,
) -> None:
    response = await client.post("/oauth2/register", json=_metadata(f"{logo_server}{path}"),
                                 headers=bearer(initial_token))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"
    assert why in response.json()["error_description"]
    with world.sessions() as session:
        assert session.exec(select(App).where(App.name == "Logo App")).first() is None


@pytest.mark.parametrize("uri", ["https://10.0.0.7/logo.png", "https://169.254.169.254/x.png",
                                 "https://[::ffff:127.0.0.1]/logo.png"])
async def test_a_logo_on_a_private_address_is_never_fetched(
    client: httpx.AsyncClient, initial_token: str, uri: str
) -> None:
    response = await client.post("/oauth2/register", json=_metadata(uri),
                                 headers=bearer(initial_token))
    assert response.status_code == 400
    assert "not allowed" in response.json()["error_description"]
