"""The whole flow as partner apps run it, with two independent client libraries:
Authlib's httpx OAuth2Client and requests-oauthlib's OAuth2Session. Everything the app
learns about the server comes from discovery; ID tokens are checked against the JWKS."""

from __future__ import annotations

import base64
import hashlib
import time
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client.errors import OAuthError
from joserfc import jwt
from requests_oauthlib import OAuth2Session
from sqlmodel import select

from shared.models import App, Connection, ConnectionStatus
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    User,
    obtain_tokens,
    revoke,
    verified_jwt,
)

with warnings.catch_warnings():
    # Authlib 1.9 points at a successor of its httpx integration; this is the one installed.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

SCOPES = ["openid", "profile", "email", "employee.info.read", "offline_access"]


@pytest.fixture
def metadata(auth_server: AuthServer) -> dict[str, Any]:
    response = httpx.get(f"{auth_server.url}/.well-known/openid-configuration")
    assert response.status_code == 200
    return response.json()


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def check_id_token(server: AuthServer, metadata: dict, id_token: str, client: Client,
                   user_id: str, access_token: str, nonce: str | None) -> dict:
    header, claims = verified_jwt(server, id_token, "RS256")
    assert header["alg"] == "RS256" and header["kid"]
    expected: dict[str, Any] = {
        "iss": {"essential": True, "value": metadata["issuer"]},
        "aud": {"essential": True, "value": client.client_id},
        "sub": {"essential": True, "value": user_id},
        "exp": {"essential": True},
        "iat": {"essential": True},
    }
    if nonce is not None:
        expected["nonce"] = {"essential": True, "value": nonce}
    jwt.JWTClaimsRegistry(**expected).validate(claims)
    assert claims["exp"] > time.time() > claims["iat"] - 60
    assert claims["at_hash"] == at_hash(access_token)
    return claims


def check_access_token(server: AuthServer, metadata: dict, token: str, client: Client,
                       user_id: str) -> dict:
    header, claims = verified_jwt(server, token, "ES256")
    assert header["typ"] == "at+jwt"
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": metadata["issuer"]},
        aud={"essential": True, "value": "koppel-api"},
        sub={"essential": True, "value": user_id},
        client_id={"essential": True, "value": client.client_id},
        exp={"essential": True}, jti={"essential": True},
    ).validate(claims)
    for claim in ("environment_id", "connection_id", "debtor_id", "scope", "iat"):
        assert claim in claims
    return claims


def connection_status(server: AuthServer, client: Client) -> list[ConnectionStatus]:
    with server.sessions() as session:
        app_id = session.exec(select(App.id).where(App.client_id == client.client_id)).one()
        return [c.status for c in session.exec(select(Connection)
                                               .where(Connection.app_id == app_id)).all()]


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "none"])
def test_whole_flow_with_authlib_httpx_client(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    metadata: dict, signed_in_user: tuple[User, str], auth_method: str,
) -> None:
    client = new_app(auth_method=auth_method)
    user = signed_in_user[0]
    oauth = OAuth2Client(
        client.client_id, client.secret, scope=" ".join(SCOPES),
        redirect_uri=client.redirect_uri, code_challenge_method="S256",
        token_endpoint_auth_method=auth_method,
    )
    verifier, nonce = generate_token(48), generate_token(16)
    url, state = oauth.create_authorization_url(metadata["authorization_endpoint"],
                                                code_verifier=verifier, nonce=nonce)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]

    agent = browser(signed_in=True)
    linked = agent.walk(agent.http.get(url), client.redirect_uri)
    assert linked.pages == ["consent"]
    assert linked.params["state"] == state
    assert linked.params["iss"] == metadata["issuer"]  # RFC 9207: the app checks it

    token = oauth.fetch_token(metadata["token_endpoint"], authorization_response=linked.location,
                              code_verifier=verifier, state=state)
    assert token["token_type"] == "Bearer"
    assert token["scope"].split() == SCOPES
    claims = check_access_token(auth_server, metadata, token["access_token"], client, user.id)
    check_id_token(auth_server, metadata, token["id_token"], client, user.id,
                   token["access_token"], nonce)

    info = httpx.get(metadata["userinfo_endpoint"],
                     headers={"Authorization": f"Bearer {token['access_token']}"})
    assert info.status_code == 200
    assert info.json() == {"sub": user.id, "name": "Test User", "email": user.email,
                           "email_verified": True}

    refreshed = oauth.refresh_token(metadata["token_endpoint"],
                                    refresh_token=token["refresh_token"])
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert refreshed["access_token"] != token["access_token"]
    assert check_access_token(auth_server, metadata, refreshed["access_token"], client,
                              user.id)["connection_id"] == claims["connection_id"]

    answer = oauth.introspect_token(metadata["introspection_endpoint"],
                                    token=refreshed["access_token"])
    if auth_method == "none":
        # Introspection needs an authenticated client (RFC 7662 section 2.1).
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
        assert "none" not in metadata["introspection_endpoint_auth_methods_supported"]
    else:
        seen = answer.json()
        assert seen["active"] is True
        assert seen["client_id"] == client.client_id and seen["sub"] == user.id
        assert seen["scope"].split() == SCOPES

    revoked = oauth.revoke_token(metadata["revocation_endpoint"],
                                 token=refreshed["refresh_token"],
                                 token_type_hint="refresh_token")
    assert revoked.status_code == 200
    if auth_method != "none":
        for old in (refreshed["refresh_token"], refreshed["access_token"]):
            assert oauth.introspect_token(metadata["introspection_endpoint"], token=old
                                          ).json() == {"active": False}
    # The refusal says why, through the client library's own error.
    with pytest.raises(OAuthError, match="invalid_grant: this refresh token was revoked"):
        oauth.refresh_token(metadata["token_endpoint"], refresh_token=refreshed["refresh_token"])
    # Revoking a token does not remove the consent.
    assert connection_status(auth_server, client) == [ConnectionStatus.ACTIVE]
    again, _ = oauth.create_authorization_url(metadata["authorization_endpoint"],
                                              code_verifier=generate_token(48))
    assert agent.walk(agent.http.get(again), client.redirect_uri).pages == []


def test_whole_flow_with_requests_oauthlib(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    metadata: dict, signed_in_user: tuple[User, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the test server speaks http
    client = new_app(auth_method="client_secret_post")
    user = signed_in_user[0]
    session = OAuth2Session(client.client_id, redirect_uri=client.redirect_uri, scope=SCOPES,
                            pkce="S256")
    url, state = session.authorization_url(metadata["authorization_endpoint"])
    assert parse_qs(urlsplit(url).query)["code_challenge_method"] == ["S256"]

    agent = browser(signed_in=True)
    linked = agent.walk(agent.http.get(url), client.redirect_uri)
    assert linked.params["state"] == state
    assert linked.params["iss"] == metadata["issuer"]
    token = session.fetch_token(metadata["token_endpoint"],
                                authorization_response=linked.location,
                                client_secret=client.secret, include_client_id=True)
    assert token["scope"] == SCOPES
    check_id_token(auth_server, metadata, token["id_token"], client, user.id,
                   token["access_token"], None)

    # The session sends its token itself.
    info = session.get(metadata["userinfo_endpoint"])
    assert info.status_code == 200 and info.json()["sub"] == user.id

    old_refresh = token["refresh_token"]
    refreshed = session.refresh_token(metadata["token_endpoint"], client_id=client.client_id,
                                      client_secret=client.secret)
    assert refreshed["refresh_token"] != old_refresh
    check_access_token(auth_server, metadata, refreshed["access_token"], client, user.id)
    assert session.get(metadata["userinfo_endpoint"]).status_code == 200


def test_userinfo_needs_openid_and_a_live_token(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    metadata: dict,
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    without = obtain_tokens(auth_server, agent, AuthRequest(client, scope="employee.info.read"),
                            None)
    for header in (f"Bearer {without['access_token']}", "Bearer nonsense", ""):
        response = httpx.get(metadata["userinfo_endpoint"], headers={"Authorization": header})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
    with_openid = obtain_tokens(auth_server, agent,
                                AuthRequest(client, scope="openid offline_access"), None)
    bearer = {"Authorization": f"Bearer {with_openid['access_token']}"}
    assert httpx.get(metadata["userinfo_endpoint"], headers=bearer).status_code == 200
    # Never taken from the URL (where logs and referrers would keep it).
    in_url = httpx.get(metadata["userinfo_endpoint"],
                       params={"access_token": with_openid["access_token"]})
    assert in_url.status_code == 401
    assert revoke(auth_server, client, with_openid["access_token"]).status_code == 200
    assert httpx.get(metadata["userinfo_endpoint"], headers=bearer).status_code == 401
