"""The token endpoint shares one Authlib server per process and binds each request's
context to it: concurrent requests never see each other's client or transaction, and
nothing about a client outlives its request (a suspension or a new secret applies to
the very next request)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlmodel import select

from shared.models import App, AppStatus
from shared.vault import TokenKind, new_token, token_digest
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import oauth_error, post_form


def _claims(access_token: str) -> dict:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _client_credentials(server: AuthServer, client: Client):
    return post_form(server, "/token", client, {"grant_type": "client_credentials"})


def test_concurrent_grants_of_different_clients_get_their_own_tokens(
    auth_server: AuthServer, new_app: Callable[..., Client],
) -> None:
    clients = [new_app() for _ in range(3)]
    wrong = new_app()
    wrong = Client(wrong.client_id, "not-the-secret", wrong.auth_method, wrong.redirect_uris,
                   wrong.scopes)
    requests = [clients[i % 3] for i in range(36)] + [wrong] * 4
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda c: _client_credentials(auth_server, c), requests))
    for client, response in zip(requests, responses, strict=True):
        if client is wrong:
            assert response.status_code == 401, response.text
            assert oauth_error(response) == "invalid_client"
            continue
        assert response.status_code == 200, response.text
        claims = _claims(response.json()["access_token"])
        assert claims["client_id"] == client.client_id
        assert claims["sub"] == client.client_id


def _update_app(server: AuthServer, client_id: str, **values) -> None:
    with server.sessions() as session, session.begin():
        app = session.exec(select(App).where(App.client_id == client_id)).one()
        for name, value in values.items():
            setattr(app, name, value)
        session.add(app)


def test_a_suspension_applies_to_the_next_token_request(
    auth_server: AuthServer, new_app: Callable[..., Client],
) -> None:
    client = new_app()
    assert _client_credentials(auth_server, client).status_code == 200
    _update_app(auth_server, client.client_id, status=AppStatus.SUSPENDED)
    response = _client_credentials(auth_server, client)
    assert response.status_code in (400, 401), response.text
    assert "access_token" not in response.json()
    _update_app(auth_server, client.client_id, status=AppStatus.ACTIVE)
    assert _client_credentials(auth_server, client).status_code == 200


def test_a_new_secret_applies_to_the_next_token_request(
    auth_server: AuthServer, new_app: Callable[..., Client],
) -> None:
    client = new_app()
    assert _client_credentials(auth_server, client).status_code == 200
    secret = new_token(TokenKind.CLIENT_SECRET)
    _update_app(auth_server, client.client_id,
                client_secret_digest=token_digest(auth_server.keyring.digest_key, secret))
    old = _client_credentials(auth_server, client)
    assert old.status_code == 401, old.text
    assert oauth_error(old) == "invalid_client"
    renewed = Client(client.client_id, secret, client.auth_method, client.redirect_uris,
                     client.scopes)
    assert _client_credentials(auth_server, renewed).status_code == 200


def test_a_form_with_too_many_fields_is_refused(
    auth_server: AuthServer, new_app: Callable[..., Client],
) -> None:
    client = new_app()
    form = {"grant_type": "client_credentials", **{f"x{i}": "1" for i in range(60)}}
    response = post_form(auth_server, "/token", client, form)
    assert response.status_code == 400, response.text
    assert oauth_error(response) == "invalid_request"
