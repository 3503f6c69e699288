"""The FAPI 2.0 Security Profile for a FAPI 2.0 client (PAR required, DPoP-bound access
tokens, private_key_jwt: shared.oauth.is_fapi), on the real auth service: codes live at
most 60 s, `redirect_uri` comes in the pushed request, assertions are PS256, ES256 or
EdDSA with the issuer as their only audience, `iat`/`nbf` may be a little ahead, refresh
tokens are not rotated, and every redirect is 303. A plain private_key_jwt client keeps
the rules it had."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey
from sqlmodel import col, select

from shared.db.types import utcnow
from shared.models import AuthorizationCode, RefreshToken
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    User,
    callback_params,
    oauth_error,
    only_form,
    pushed_authorize,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPE = "employee.info.read offline_access"
KEYS: dict[str, Callable[[], Any]] = {
    "ES256": lambda: ECKey.generate_key("P-256", auto_kid=True),
    "PS256": lambda: RSAKey.generate_key(2048, auto_kid=True),
    "RS256": lambda: RSAKey.generate_key(2048, auto_kid=True),
    "EdDSA": lambda: OKPKey.generate_key("Ed25519", auto_kid=True),
    "Ed25519": lambda: OKPKey.generate_key("Ed25519", auto_kid=True),
}


@dataclass
class KeyClient:
    """A private_key_jwt client and the private key only it (and the test) holds."""

    client: Client
    key: Any
    alg: str

    @property
    def client_id(self) -> str:
        return self.client.client_id

    def assertion(self, audience: Any, *, alg: str | None = None, typ: str | None = None,
                  iat_ahead: int = 0, nbf_ahead: int | None = None) -> str:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience,
                  "iat": now + iat_ahead, "exp": now + iat_ahead + 60,
                  "jti": secrets.token_urlsafe(12)}
        if nbf_ahead is not None:
            claims["nbf"] = now + nbf_ahead
        header = {"alg": alg or self.alg, "kid": self.key.kid}
        if typ is not None:
            header["typ"] = typ
        return jwt.encode(header, claims, self.key, algorithms=[alg or self.alg])

    def dpop_proof(self, method: str, url: str) -> str:
        """An RFC 9449 proof with the client's own key, sent with every token request of a
        client registered with dpop_bound_access_tokens."""
        header = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.key.as_dict(private=False)}
        claims = {"jti": secrets.token_urlsafe(12), "htm": method, "htu": url,
                  "iat": int(time.time())}
        return jwt.encode(header, claims, self.key, algorithms=[self.alg])


@pytest.fixture
def key_client(new_app: Callable[..., Client]) -> Callable[..., KeyClient]:
    """A private_key_jwt client with a key for `alg`; FAPI 2.0 unless `fapi=False`."""

    def make(alg: str = "ES256", *, fapi: bool = True) -> KeyClient:
        key = KEYS[alg]()
        client = new_app(auth_method="private_key_jwt",
                         jwks={"keys": [key.as_dict(private=False)]},
                         require_pushed_authorization_requests=fapi,
                         dpop_bound_access_tokens=fapi)
        return KeyClient(client, key, alg)

    return make


def par(server: AuthServer, client: KeyClient, request: AuthRequest, *,
        assertion: str | None = None, **overrides: str | None) -> httpx.Response:
    form = {**request.params(**overrides), "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion or client.assertion(server.url)}
    return httpx.post(f"{server.url}/par", data=form)


def token(server: AuthServer, client: KeyClient, form: dict[str, str]) -> httpx.Response:
    url = f"{server.url}/token"
    return httpx.post(url, headers={"DPoP": client.dpop_proof("POST", url)}, data={
        **form, "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client.assertion(server.url)})


def code_via_par(server: AuthServer, agent: Browser, client: KeyClient, user: User
                 ) -> tuple[AuthRequest, str]:
    """Push, authorize, log in and consent, checking that every redirect of the
    authorization server on the way is 303 See Other (FAPI 2.0 section 5.3.2.2)."""
    request = AuthRequest(client.client, scope=SCOPE)
    pushed = par(server, client, request)
    assert pushed.status_code == 201, pushed.text
    start = pushed_authorize(agent, client.client_id, pushed.json()["request_uri"])
    assert start.status_code == 303 and start.headers["location"].startswith("/login")
    logged_in = agent.login(agent.follow(start), user)
    assert logged_in.status_code == 303 and logged_in.headers["location"].startswith("/consent")
    consent = agent.follow(logged_in)
    assert consent.status_code == 200 and only_form(consent).method == "post"
    back = agent.submit(consent, decision="allow")
    assert back.status_code == 303, back.text[:300]
    params = callback_params(back.headers["location"], request.target)
    return request, params["code"]


def redeem(server: AuthServer, client: KeyClient, request: AuthRequest, code: str
           ) -> httpx.Response:
    return token(server, client, {"grant_type": "authorization_code", "code": code,
                                  "redirect_uri": request.target,
                                  "code_verifier": request.pkce.verifier})


def age_code(server: AuthServer, code: str, seconds: int) -> timedelta:
    """Move the code's issue and expiry `seconds` into the past (as if it had been issued
    that long ago); returns the lifetime it was given."""
    with server.sessions() as session, session.begin():
        row = session.exec(select(AuthorizationCode)
                           .where(AuthorizationCode.code_digest == server.digest(code))).one()
        lifetime = row.expires_at - row.created_at
        row.created_at -= timedelta(seconds=seconds)
        row.expires_at -= timedelta(seconds=seconds)
    return lifetime


def test_a_fapi_client_links_through_par_with_303_redirects(
    auth_server: AuthServer, browser: Callable[..., Browser],
    key_client: Callable[..., KeyClient], new_user: Callable[..., User],
) -> None:
    client = key_client()
    request, code = code_via_par(auth_server, browser(), client, new_user())
    tokens = redeem(auth_server, client, request, code)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["scope"] == SCOPE and "refresh_token" in tokens.json()
    # Not through the front channel, not even once.
    direct = browser().authorize(AuthRequest(client.client))
    assert callback_params(direct.headers["location"], client.client.redirect_uri)["error"] \
        == "invalid_request"


@pytest.mark.parametrize(("fapi", "accepted"), [(True, False), (False, True)])
def test_a_fapi_clients_code_is_refused_61_seconds_after_it_was_issued(
    auth_server: AuthServer, browser: Callable[..., Browser],
    key_client: Callable[..., KeyClient], new_user: Callable[..., User], fapi: bool,
    accepted: bool,
) -> None:
    client = key_client(fapi=fapi)
    agent, user = browser(), new_user()
    if fapi:
        request, code = code_via_par(auth_server, agent, client, user)
    else:
        request = AuthRequest(client.client, scope=SCOPE)
        code = agent.link(request, user).params["code"]
    lifetime = age_code(auth_server, code, 61)
    # FAPI 2.0 section 5.3.2.1: at most 60 s; others get KOPPEL_AUTHORIZATION_CODE_TTL.
    if fapi:
        assert timedelta(seconds=59) <= lifetime <= timedelta(seconds=60)
    else:
        assert lifetime > timedelta(seconds=61)
    response = redeem(auth_server, client, request, code)
    if accepted:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 400 and oauth_error(response) == "invalid_grant"


def test_a_fapi_client_sends_redirect_uri_in_its_pushed_request(
    auth_server: AuthServer, key_client: Callable[..., KeyClient],
) -> None:
    fapi = key_client()
    refused = par(auth_server, fapi, AuthRequest(fapi.client), redirect_uri=None)
    assert refused.status_code == 400 and oauth_error(refused) == "invalid_request"
    assert "redirect_uri" in refused.json()["error_description"]
    # One registered redirect URI: a plain client may leave it out (RFC 6749 3.1.2.3).
    plain = key_client(fapi=False)
    assert par(auth_server, plain, AuthRequest(plain.client),
               redirect_uri=None).status_code == 201


@pytest.mark.parametrize("alg", ["PS256", "ES256", "EdDSA", "Ed25519"])
def test_a_fapi_client_authenticates_with_each_fapi_algorithm(
    auth_server: AuthServer, key_client: Callable[..., KeyClient], alg: str,
) -> None:
    client = key_client(alg)
    response = par(auth_server, client, AuthRequest(client.client))
    assert response.status_code == 201, response.text


def test_rs256_is_refused_for_a_fapi_client_only(
    auth_server: AuthServer, key_client: Callable[..., KeyClient],
) -> None:
    fapi = key_client("RS256")
    response = par(auth_server, fapi, AuthRequest(fapi.client))
    assert response.status_code == 401 and oauth_error(response) == "invalid_client"
    assert "PS256, ES256 or EdDSA, not RS256" in response.json()["error_description"]
    # The same key with PS256 is fine.
    assert par(auth_server, fapi, AuthRequest(fapi.client),
               assertion=fapi.assertion(auth_server.url, alg="PS256")).status_code == 201
    plain = key_client("RS256", fapi=False)
    assert par(auth_server, plain, AuthRequest(plain.client)).status_code == 201


def _audiences(server: AuthServer) -> dict[str, Any]:
    return {
        "issuer": server.url,
        "[issuer]": [server.url],
        "token endpoint": f"{server.url}/token",
        "par endpoint": f"{server.url}/par",
        "[issuer, token endpoint]": [server.url, f"{server.url}/token"],
        "another server": "https://other.example",
    }


@pytest.mark.parametrize(("audience", "fapi_ok", "plain_ok"), [
    ("issuer", True, True),
    ("[issuer]", True, True),
    ("token endpoint", False, True),
    ("par endpoint", False, True),
    ("[issuer, token endpoint]", False, True),
    ("another server", False, False),
])
def test_a_fapi_clients_assertion_has_the_issuer_as_its_only_audience(
    auth_server: AuthServer, key_client: Callable[..., KeyClient], audience: str,
    fapi_ok: bool, plain_ok: bool,
) -> None:
    """The audience-injection fix (draft-ietf-oauth-rfc7523bis) for FAPI 2.0 clients; a
    plain client keeps every audience it could use before."""
    aud = _audiences(auth_server)[audience]
    for client, ok in ((key_client(), fapi_ok), (key_client(fapi=False), plain_ok)):
        response = par(auth_server, client, AuthRequest(client.client),
                       assertion=client.assertion(aud))
        assert response.status_code == (201 if ok else 401), (audience, response.text)
        if not ok:
            assert oauth_error(response) == "invalid_client"


@pytest.mark.parametrize(("typ", "ok"), [
    (None, True), ("JWT", True), ("client-authentication+jwt", True), ("dpop+jwt", False),
    ("at+jwt", False),
])
def test_a_fapi_clients_assertion_type(
    auth_server: AuthServer, key_client: Callable[..., KeyClient], typ: str | None, ok: bool,
) -> None:
    client = key_client()
    response = par(auth_server, client, AuthRequest(client.client),
                   assertion=client.assertion(auth_server.url, typ=typ))
    assert response.status_code == (201 if ok else 401), response.text


@pytest.mark.parametrize(("iat_ahead", "nbf_ahead", "ok"), [
    (10, None, True), (0, 10, True), (61, None, False), (0, 61, False),
])
def test_iat_and_nbf_may_be_10_seconds_ahead_but_not_61(
    auth_server: AuthServer, key_client: Callable[..., KeyClient], iat_ahead: int,
    nbf_ahead: int | None, ok: bool,
) -> None:
    """FAPI 2.0 section 5.3.2.1 (clock skew): 0 to 10 s in the future must pass, more
    than 60 s must not."""
    for client in (key_client(), key_client(fapi=False)):
        response = par(auth_server, client, AuthRequest(client.client),
                       assertion=client.assertion(auth_server.url, iat_ahead=iat_ahead,
                                                  nbf_ahead=nbf_ahead))
        assert response.status_code == (201 if ok else 401), response.text


def test_a_fapi_clients_refresh_token_is_not_rotated(
    auth_server: AuthServer, browser: Callable[..., Browser],
    key_client: Callable[..., KeyClient], new_user: Callable[..., User],
) -> None:
    """FAPI 2.0 section 5.3.2.1: no rotation. The same refresh token works again and
    again (a lost answer costs the client nothing), no new one is issued, and each use
    moves its idle end; it is still bound to the client's key (private_key_jwt)."""
    client = key_client()
    request, code = code_via_par(auth_server, browser(), client, new_user())
    first = redeem(auth_server, client, request, code).json()
    refresh_token = first["refresh_token"]
    with auth_server.sessions() as session, session.begin():
        row = session.exec(select(RefreshToken).where(
            RefreshToken.token_digest == auth_server.digest(refresh_token))).one()
        row.expires_at = utcnow() + timedelta(hours=1)  # as if long unused
    for _ in range(3):
        answer = token(auth_server, client, {"grant_type": "refresh_token",
                                             "refresh_token": refresh_token})
        assert answer.status_code == 200, answer.text
        assert "refresh_token" not in answer.json() and answer.json()["access_token"]
    with auth_server.sessions() as session:
        row = session.exec(select(RefreshToken).where(
            RefreshToken.token_digest == auth_server.digest(refresh_token))).one()
        tokens = session.exec(select(RefreshToken).where(
            col(RefreshToken.family_id) == row.family_id)).all()
    assert row.rotated_at is None and len(tokens) == 1
    assert row.expires_at > utcnow() + timedelta(days=29)  # the idle end moved on

    # Another client (even a FAPI one) cannot use it.
    stranger = key_client()
    refused = token(auth_server, stranger, {"grant_type": "refresh_token",
                                            "refresh_token": refresh_token})
    assert refused.status_code == 400 and oauth_error(refused) == "invalid_grant"
