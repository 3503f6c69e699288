"""`private_key_jwt` client authentication (RFC 7523 section 2.2, OpenID Connect).

Every client may name the issuer or the endpoint it calls as the assertion's audience;
`iat` and `nbf` may be up to 30 s ahead of the server's clock (FAPI 2.0 section 5.3.2.1:
10 s must pass, more than 60 s must not). A FAPI 2.0 client (shared.oauth.is_fapi) gets the
profile's stricter rules: PS256, ES256 or EdDSA only, and the issuer as the one and only
audience (the audience-injection fix of draft-ietf-oauth-rfc7523bis: an assertion made for
another server's token endpoint, or for this one's, cannot be replayed here), with `typ`
absent, `JWT` or `client-authentication+jwt`.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.auth.oauth2.context import AuthContext
from services.auth.oauth2.remote_jwks import client_keys
from shared.oauth import CLIENT_ASSERTION_ALGS, FAPI_SIGNING_ALGS, is_fapi

MAX_ASSERTION_LIFETIME_S = 300
# How far ahead of the server's clock `iat` and `nbf` may be.
CLOCK_SKEW_S = 30
# The `typ` values a FAPI 2.0 client's assertion may carry (draft-ietf-oauth-rfc7523bis).
FAPI_ASSERTION_TYPES = frozenset({"jwt", "client-authentication+jwt",
                                  "application/client-authentication+jwt"})
# The client whose assertion this thread is checking (Authlib resolves its key first).
_client: ContextVar[Any] = ContextVar("koppel_assertion_client")


class PrivateKeyJwt(JWTBearerClientAssertion):
    """A client signs a short-lived JWT with a key from the JWKS it registered."""

    # Authlib's subclasses name their method here; its stubs mark the attribute Final.
    CLIENT_AUTH_METHOD = "private_key_jwt"  # type: ignore[misc]

    def __init__(self, server) -> None:
        super().__init__(validate_jti=True, leeway=CLOCK_SKEW_S)
        self._server = server

    @property
    def ctx(self) -> AuthContext:
        return self._server.ctx

    def get_audiences(self) -> list[str]:
        issuer = self.ctx.settings.issuer
        return [issuer, f"{issuer}/token", f"{issuer}/par", f"{issuer}/revoke",
                f"{issuer}/introspect"]

    def verify_claims(self, claims) -> None:
        client = _client.get(None)
        if client is not None and is_fapi(client.app):
            issuer = self.ctx.settings.issuer
            if claims.get("aud") not in (issuer, [issuer]):
                raise InvalidClientError(description=(
                    "a FAPI 2.0 client's assertion names the issuer as its only audience"))
        super().verify_claims(claims)

    @staticmethod
    def _check_fapi_header(assertion: str) -> None:
        """A FAPI 2.0 client's assertion: a FAPI algorithm and a client-assertion `typ`."""
        try:
            header = jws.extract_compact(assertion.encode()).headers()
        except (JoseError, ValueError) as error:
            raise InvalidClientError(description="the client assertion is not a JWS") from error
        alg, typ = header.get("alg"), header.get("typ")
        if alg not in FAPI_SIGNING_ALGS:
            raise InvalidClientError(description=(
                f"a FAPI 2.0 client signs with PS256, ES256 or EdDSA, not {alg}"))
        if typ is not None and str(typ).lower() not in FAPI_ASSERTION_TYPES:
            raise InvalidClientError(description=(
                f"a client assertion's typ is client-authentication+jwt, not {typ}"))

    def process_assertion_claims(self, assertion: str, resolve_key) -> dict:
        """Verify the assertion with every advertised algorithm (joserfc, like Authlib's
        default call, would allow only its "recommended" three and refuse PS256 and
        EdDSA; a FAPI 2.0 client gets only the profile's), then its claims. A client with
        a `jwks_uri` whose assertion does not verify with the kept key set gets one fresh
        download (a rotated key)."""
        client = _client.get(None)
        algorithms = list(CLIENT_ASSERTION_ALGS)
        if client is not None and is_fapi(client.app):
            self._check_fapi_header(assertion)
            algorithms = list(FAPI_SIGNING_ALGS)
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=algorithms)
        except JoseError as error:
            fresh = (client_keys(self.ctx, client.client_id, client.app.jwks_uri, fresh=True)
                     if client is not None and client.app.jwks_uri else None)
            if fresh is None:
                raise InvalidClientError(
                    description=f"the client assertion did not verify: {error.description}"
                ) from error
            try:
                token = jwt.decode(assertion, fresh, algorithms=algorithms)
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
