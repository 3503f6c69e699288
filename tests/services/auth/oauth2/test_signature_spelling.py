"""One spelling per issued token (issue 14, finding 9): Koppel signs its ES256 tokens in
low-S form, and a token whose signature was malleated to (r, n - s), valid ECDSA for the
same key, is refused by the resource servers and by introspection."""

from __future__ import annotations

import base64

from services.registry.app import create_app
from shared.config import Settings
from shared.es256 import HALF_ORDER, P256_ORDER
from tests.fixtures.auth_server import AuthServer, new_client
from tests.services.auth.support import introspect, post_form
from tests.services.conftest import running
from tests.services.registry.support import registry_settings

ISSUED = 40  # an unnormalised signer writes high S half the time: 2^-40 to pass by chance


def _signature(token: str) -> tuple[int, int]:
    segment = token.rpartition(".")[2]
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    assert len(raw) == 64
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")


def _malleated(token: str) -> str:
    """The same token with its signature's other valid spelling, (r, n - s)."""
    r, s = _signature(token)
    raw = r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big")
    return f"{token.rpartition('.')[0]}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}"


async def test_a_malleated_signature_is_refused_and_every_issued_token_has_low_s(
    settings: Settings, auth_server: AuthServer,
) -> None:
    with auth_server.sessions() as session, session.begin():
        app = new_client(session, auth_server.keyring, name="Spelling")
    tokens = []
    for _ in range(ISSUED):
        response = post_form(auth_server, "/token", app, {"grant_type": "client_credentials"})
        assert response.status_code == 200, response.text
        tokens.append(response.json()["access_token"])
    assert all(_signature(token)[1] <= HALF_ORDER for token in tokens)

    token = tokens[0]
    other = _malleated(token)
    assert other != token
    async with running(create_app(registry_settings(settings, auth_server))) as registry:
        original = await registry.get("/v1/app/connections",
                                      headers={"Authorization": f"Bearer {token}"})
        assert original.status_code == 200, original.text
        refused = await registry.get("/v1/app/connections",
                                     headers={"Authorization": f"Bearer {other}"})
        assert refused.status_code == 401, refused.text
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert introspect(auth_server, app, token)["active"] is True
    assert introspect(auth_server, app, other) == {"active": False}
