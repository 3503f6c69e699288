"""Rotating the signing keys keeps the old public key published while its tokens live."""

from __future__ import annotations

import httpx

from shared.config import Settings
from shared.signing import rotate_signing_keys_in
from shared.vault import SecretBox
from tests.fixtures.auth_server import AuthServer
from tests.services.auth.support import introspect, post_form, verified_jwt


def _kids(server: AuthServer) -> set[str]:
    jwks = httpx.get(f"{server.url}/.well-known/jwks.json").json()
    return {key["kid"] for key in jwks["keys"]}


def test_old_tokens_keep_working_after_a_signing_key_rotation(auth_server: AuthServer) -> None:
    client = auth_server.clients["basic"]
    before = post_form(auth_server, "/token", client, {"grant_type": "client_credentials"})
    assert before.status_code == 200, before.text
    old_token = before.json()["access_token"]
    old_kid = verified_jwt(auth_server, old_token, "ES256")[0]["kid"]

    with auth_server.sessions() as session, session.begin():
        new_kids = rotate_signing_keys_in(session, SecretBox(auth_server.keyring), Settings())

    published = _kids(auth_server)
    assert old_kid in published, "the retired key must stay in the JWKS"
    assert set(new_kids) <= published
    # A token signed before the rotation still verifies against the JWKS and is active.
    verified_jwt(auth_server, old_token, "ES256")
    assert introspect(auth_server, client, old_token)["active"] is True
