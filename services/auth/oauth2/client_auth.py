"""`private_key_jwt` client authentication (RFC 7523 section 2.2, OpenID Connect)."""

from __future__ import annotations

import time

from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc.jwk import KeySet

from services.auth.oauth2.context import AuthContext

MAX_ASSERTION_LIFETIME_S = 300


class PrivateKeyJwt(JWTBearerClientAssertion):
    """A client signs a short-lived JWT with a key from the JWKS it registered."""

    # Authlib's subclasses name their method here; its stubs mark the attribute Final.
    CLIENT_AUTH_METHOD = "private_key_jwt"  # type: ignore[misc]

    def __init__(self, server) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self._server = server

    @property
    def ctx(self) -> AuthContext:
        return self._server.ctx

    def get_audiences(self) -> list[str]:
        issuer = self.ctx.settings.issuer
        return [issuer, f"{issuer}/token", f"{issuer}/revoke", f"{issuer}/introspect"]

    def resolve_client_public_key(self, client) -> KeySet:
        if not client.app.jwks:
            # Fetching a jwks_uri waits for the shared SSRF guard; until then only
            # registered JWKS documents are accepted.
            raise InvalidClientError(description="this client has no registered jwks")
        return KeySet.import_key_set(client.app.jwks)

    def validate_jti(self, claims: dict, jti: str) -> bool:
        exp = int(claims.get("exp", 0))
        lifetime = exp - int(time.time())
        if lifetime <= 0 or lifetime > MAX_ASSERTION_LIFETIME_S:
            raise InvalidClientError(description="the assertion must expire within 5 minutes")
        key = f"koppel:assertion:{claims['sub']}:{str(jti)[:200]}"
        # An assertion is good for one request: a replayed one finds its jti taken.
        return bool(self.ctx.redis.set(key, b"1", ex=lifetime + 60, nx=True))
