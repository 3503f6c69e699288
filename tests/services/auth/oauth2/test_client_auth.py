"""Client authentication beyond client secrets: private_key_jwt, and one method only."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.fixtures.auth_server import AuthServer, Client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _assertion(key: ECKey, client_id: str, audience: str, *, lifetime: int = 60,
               jti: str | None = None) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": now,
              "exp": now + lifetime, "jti": jti or secrets.token_urlsafe(12)}
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


def _token(server: AuthServer, assertion: str) -> httpx.Response:
    return httpx.post(f"{server.url}/token", data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    })


def test_private_key_jwt(auth_server: AuthServer, new_app: Callable[..., Client]) -> None:
    key = ECKey.generate_key("P-256", auto_kid=True)
    app = new_app(auth_method="private_key_jwt", jwks={"keys": [key.as_dict(private=False)]})
    audience = f"{auth_server.url}/token"

    first = _token(auth_server, _assertion(key, app.client_id, audience, jti="once"))
    assert first.status_code == 200, first.text
    assert first.json()["scope"] == "webhooks.manage"

    replay = _token(auth_server, _assertion(key, app.client_id, audience, jti="once"))
    # RFC 6749 section 5.2: 401; the Basic challenge only for credentials sent with Basic.
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"
    assert "www-authenticate" not in replay.headers

    stranger = ECKey.generate_key("P-256", auto_kid=True)
    foreign = _token(auth_server, _assertion(stranger, app.client_id, audience))
    assert foreign.json()["error"] == "invalid_client"

    elsewhere = _token(auth_server, _assertion(key, app.client_id, "https://other.example"))
    assert elsewhere.json()["error"] == "invalid_client"

    too_long = _token(auth_server, _assertion(key, app.client_id, audience, lifetime=3600))
    assert too_long.json()["error"] == "invalid_client"


def test_two_authentication_methods_in_one_request_are_refused(
    auth_server: AuthServer, new_app: Callable[..., Client]
) -> None:
    app = new_app()
    response = httpx.post(
        f"{auth_server.url}/token",
        data={"grant_type": "client_credentials", "client_id": app.client_id,
              "client_secret": app.secret},
        auth=(app.client_id, app.secret),
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert response.headers["cache-control"] == "no-store"
