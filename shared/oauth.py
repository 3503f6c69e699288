"""OAuth 2.0 vocabulary the services share: the client authentication methods Koppel
accepts at its token, revocation and introspection endpoints, and apps may register, and
the algorithms it accepts for client assertions (`private_key_jwt`), and what makes a
client a FAPI 2.0 client."""

from __future__ import annotations

from typing import Any, Literal, get_args

ClientAuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
CLIENT_AUTH_METHODS: tuple[str, ...] = get_args(ClientAuthMethod)
# A confidential client proves who it is; "none" is for public clients only.
CONFIDENTIAL_CLIENT_AUTH_METHODS: tuple[str, ...] = tuple(
    method for method in CLIENT_AUTH_METHODS if method != "none")

# Signature algorithms of client assertions: what discovery advertises is exactly what the
# token endpoint verifies (`EdDSA` and its fully-specified name `Ed25519` are one thing).
CLIENT_ASSERTION_ALGS: tuple[str, ...] = ("ES256", "RS256", "PS256", "EdDSA", "Ed25519")

# FAPI 2.0 Security Profile section 5.4.1: what a FAPI 2.0 client may sign with (no RS256,
# no RSA PKCS#1 v1.5), and the longest an authorization code of such a client lives
# (section 5.3.2.1: at most 60 seconds).
FAPI_SIGNING_ALGS: tuple[str, ...] = ("PS256", "ES256", "EdDSA", "Ed25519")
FAPI_MAX_CODE_TTL_S = 60


def is_fapi(client: Any) -> bool:
    """A FAPI 2.0 client (Security Profile, section 5): it registered PAR as required,
    DPoP-bound access tokens and `private_key_jwt`. Such a client gets the profile's
    stricter rules (short codes, `redirect_uri` in the PAR request, PS256/ES256/EdDSA only,
    the issuer as the assertion's only audience)."""
    return bool(client.require_pushed_authorization_requests
                and client.dpop_bound_access_tokens
                and client.token_endpoint_auth_method == "private_key_jwt")
