"""Tokens of a first-party app bound to environment A (SECURITY.md line 34): the token
endpoint never issues one for a user of environment B, whatever a code or refresh token
in the database says; and such an app introspects only its own tokens (RFC 7662
section 4), while the platform-wide app may introspect every token."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from sqlmodel import select

from shared.models import App
from shared.models import User as UserRow
from shared.vault import TokenKind, new_token
from tests.fixtures import factories as f
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    Tree,
    User,
    exchange,
    introspect,
    oauth_error,
    obtain_tokens,
    post_form,
    refresh,
)


def _planted(server: AuthServer, client: Client, user: User) -> tuple[str, str, AuthRequest]:
    """A refresh token and an authorization code of `client` for `user`, written
    straight into the database (as a bug elsewhere might): the token endpoint must
    still check whom it issues tokens for."""
    refresh_token = new_token(TokenKind.REFRESH_TOKEN)
    code = new_token(TokenKind.AUTHORIZATION_CODE)
    request = AuthRequest(client, scope="openid offline_access")
    with server.sessions() as session, session.begin():
        app = session.exec(select(App).where(App.client_id == client.client_id)).one()
        row = session.get(UserRow, uuid.UUID(user.id))
        family = f.make_token_family(session, app, row, scopes=["openid", "offline_access"])
        f.make_refresh_token(session, family, token_digest=server.digest(refresh_token))
        code_family = f.make_token_family(session, app, row, scopes=["openid", "offline_access"])
        f.make_authorization_code(session, code_family, code_digest=server.digest(code),
                                  redirect_uri=request.target,
                                  code_challenge=request.pkce.challenge)
    return refresh_token, code, request


@pytest.mark.parametrize("whose", ["own", "foreign"])
def test_line34_a_bound_app_gets_no_token_for_another_environments_user(
    auth_server: AuthServer, new_user: Callable[..., User], new_tree: Callable[..., Tree],
    whose: str,
) -> None:
    a_app = auth_server.clients["first_party"]
    user = new_user() if whose == "own" else new_user(tree=new_tree())
    refresh_token, code, request = _planted(auth_server, a_app, user)
    by_refresh = refresh(auth_server, a_app, refresh_token)
    by_code = exchange(auth_server, request, code)
    for response in (by_refresh, by_code):
        if whose == "own":
            assert response.status_code == 200, response.text
        else:
            assert response.status_code == 400, response.text
            assert oauth_error(response) == "invalid_grant"
            assert "access_token" not in response.json()


def _app_token(server: AuthServer, client: Client) -> str:
    response = post_form(server, "/token", client, {"grant_type": "client_credentials"})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_line34_a_bound_app_introspects_only_its_own_tokens(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_tree: Callable[..., Tree], new_first_party: Callable[..., Client],
) -> None:
    a_app = auth_server.clients["first_party"]
    b_tree = new_tree()
    b_app, platform = new_first_party(b_tree), new_first_party()
    b_user_tokens = obtain_tokens(auth_server, browser(),
                                  AuthRequest(b_app, scope="openid offline_access"),
                                  new_user(tree=b_tree))
    a_user_tokens = obtain_tokens(auth_server, browser(),
                                  AuthRequest(a_app, scope="openid offline_access"), new_user())
    own = [_app_token(auth_server, a_app), a_user_tokens["access_token"],
           a_user_tokens["refresh_token"]]
    foreign = [_app_token(auth_server, b_app), b_user_tokens["access_token"],
               b_user_tokens["refresh_token"],
               _app_token(auth_server, auth_server.clients["basic"])]

    for token in own:
        assert introspect(auth_server, a_app, token)["active"] is True
    for token in foreign:
        # Exactly what an unknown token gets: nothing about it, not even that it exists.
        assert introspect(auth_server, a_app, token) == {"active": False}
        assert introspect(auth_server, a_app, token) == introspect(auth_server, a_app, "kp_nope")
    # Each client knows its own; the platform's own backend knows them all.
    assert introspect(auth_server, b_app, b_user_tokens["access_token"])["active"] is True
    for token in own + foreign:
        assert introspect(auth_server, platform, token)["active"] is True
