"""`private_key_jwt` client authentication (RFC 7523 section 2.2, OpenID Connect)."""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.auth.oauth2.context import AuthContext
from services.auth.oauth2.remote_jwks import client_keys
from shared.oauth import CLIENT_ASSERTION_ALGS

MAX_ASSERTION_LIFETIME_S = 300
# The client whose assertion this thread is checking (Authlib resolves its key first).
_client: ContextVar[Any] = ContextVar("koppel_assertion_client")


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

    def process_assertion_claims(self, assertion: str, resolve_key) -> dict:
        """Verify the assertion with every advertised algorithm (joserfc, like Authlib's
        default call, would allow only its "recommended" three and refuse PS256 and
        EdDSA), then its claims. A client with a `jwks_uri` whose assertion does not
        verify with the kept key set gets one fresh download (a rotated key)."""
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(CLIENT_ASSERTION_ALGS))
        except JoseError as error:
            client = _client.get(None)
            fresh = (client_keys(self.ctx, client.client_id, client.app.jwks_uri, fresh=True)
                     if client is not None and client.app.jwks_uri else None)
            if fresh is None:
                raise InvalidClientError(
                    description=f"the client assertion did not verify: {error.description}"
                ) from error
            try:
                token = jwt.decode(assertion, fresh, algorithms=list(CLIENT_ASSERTION_ALGS))
            except JoseError as again:
                raise InvalidClientError(
                    description=f"the client assertion did not verify: {again.description}"
                ) from again
        self.verify_claims(token.claims)
        return token.claims

    def resolve_client_public_key(self, client) -> KeySet:
        _client.set(client)
        if client.app.jwks:
            return KeySet.import_key_set(client.app.jwks)
        if client.app.jwks_uri:
            keys = client_keys(self.ctx, client.client_id, client.app.jwks_uri)
            assert keys is not None  # only a fresh download is ever refused
            return keys
        raise InvalidClientError(description="this client registered neither jwks nor jwks_uri")

    def validate_jti(self, claims: dict, jti: str) -> bool:
        exp = int(claims.get("exp", 0))
        lifetime = exp - int(time.time())
        if lifetime <= 0 or lifetime > MAX_ASSERTION_LIFETIME_S:
            raise InvalidClientError(description="the assertion must expire within 5 minutes")
        key = f"koppel:assertion:{claims['sub']}:{str(jti)[:200]}"
        # An assertion is good for one request: a replayed one finds its jti taken.
        return bool(self.ctx.redis.set(key, b"1", ex=lifetime + 60, nx=True))
