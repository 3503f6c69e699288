"""Client authentication beyond client secrets: private_key_jwt, and one method only."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

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


@pytest.mark.parametrize(("alg", "make_key"), [
    ("ES256", lambda: ECKey.generate_key("P-256", auto_kid=True)),
    ("RS256", lambda: RSAKey.generate_key(2048, auto_kid=True)),
    ("PS256", lambda: RSAKey.generate_key(2048, auto_kid=True)),
    ("EdDSA", lambda: OKPKey.generate_key("Ed25519", auto_kid=True)),
    ("Ed25519", lambda: OKPKey.generate_key("Ed25519", auto_kid=True)),
])
def test_private_key_jwt_with_every_advertised_algorithm(
    auth_server: AuthServer, new_app: Callable[..., Client], alg: str, make_key,
) -> None:
    """Discovery advertises exactly what the token endpoint verifies (PS256 and EdDSA used
    to answer "not recommended")."""
    metadata = httpx.get(f"{auth_server.url}/.well-known/openid-configuration").json()
    assert alg in metadata["token_endpoint_auth_signing_alg_values_supported"]
    key = make_key()
    app = new_app(auth_method="private_key_jwt", jwks={"keys": [key.as_dict(private=False)]})
    now = int(time.time())
    claims = {"iss": app.client_id, "sub": app.client_id, "aud": f"{auth_server.url}/token",
              "iat": now, "exp": now + 60, "jti": secrets.token_urlsafe(12)}
    assertion = jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])
    answer = _token(auth_server, assertion)
    assert answer.status_code == 200, answer.text


def test_private_key_jwt_refuses_an_algorithm_it_does_not_advertise(
    auth_server: AuthServer, new_app: Callable[..., Client],
) -> None:
    key = RSAKey.generate_key(2048, auto_kid=True)
    app = new_app(auth_method="private_key_jwt", jwks={"keys": [key.as_dict(private=False)]})
    now = int(time.time())
    claims = {"iss": app.client_id, "sub": app.client_id, "aud": f"{auth_server.url}/token",
              "iat": now, "exp": now + 60, "jti": secrets.token_urlsafe(12)}
    assertion = jwt.encode({"alg": "RS512", "kid": key.kid}, claims, key, algorithms=["RS512"])
    answer = _token(auth_server, assertion)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    assert "did not verify" in answer.json()["error_description"]


class _KeySetServer:
    """A real HTTP server on 127.0.0.1 serving a client's JWK set, counting requests."""

    def __init__(self) -> None:
        self.keys: list[dict] = []
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/jwks.json"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def key_set_server() -> Iterator[_KeySetServer]:
    server = _KeySetServer()
    try:
        yield server
    finally:
        server.http.shutdown()


def test_private_key_jwt_with_a_jwks_uri_follows_key_rotation(
    auth_server: AuthServer, new_app: Callable[..., Client], key_set_server: _KeySetServer,
) -> None:
    """A client that registered a jwks_uri authenticates (it never could); its keys are
    kept, fetched again when an assertion names a key the kept set lacks, and not
    fetched again and again for assertions that never verify."""
    old = ECKey.generate_key("P-256", auto_kid=True)
    key_set_server.keys = [old.as_dict(private=False)]
    app = new_app(auth_method="private_key_jwt", jwks_uri=key_set_server.url)
    audience = f"{auth_server.url}/token"
    for _ in range(2):
        answer = _token(auth_server, _assertion(old, app.client_id, audience))
        assert answer.status_code == 200, answer.text
    assert key_set_server.requests == 1  # kept, not fetched for every request

    new = ECKey.generate_key("P-256", auto_kid=True)  # the client rotates its key
    key_set_server.keys = [new.as_dict(private=False)]
    answer = _token(auth_server, _assertion(new, app.client_id, audience))
    assert answer.status_code == 200, answer.text
    assert key_set_server.requests == 2

    stranger = ECKey.generate_key("P-256", auto_kid=True)  # never in the set
    for _ in range(3):
        answer = _token(auth_server, _assertion(stranger, app.client_id, audience))
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    assert key_set_server.requests == 2  # at most one download a minute per client


def test_a_jwks_uri_on_a_private_address_is_refused(
    auth_server: AuthServer, new_app: Callable[..., Client],
) -> None:
    key = ECKey.generate_key("P-256", auto_kid=True)
    app = new_app(auth_method="private_key_jwt", jwks_uri="https://10.0.0.1/jwks.json")
    answer = _token(auth_server, _assertion(key, app.client_id, f"{auth_server.url}/token"))
    assert answer.status_code == 401, answer.text
    assert "jwks_uri is refused" in answer.json()["error_description"]
