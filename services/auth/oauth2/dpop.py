"""DPoP at the token endpoint (RFC 9449 section 5): which key a token request proved, and
the rules a grant applies with it.

The endpoint checks the proof (shared/dpop.py) before Authlib runs and leaves the key's
thumbprint in the request (`koppel["dpop_jkt"]`); the grants bind what they issue to it
and refuse a request whose code or refresh token is bound to another key.
"""

from __future__ import annotations

from authlib.oauth2.rfc6749.errors import InvalidGrantError, OAuth2Error

from services.auth.oauth2.requests import ParsedRequest

JKT_PARAMETER = "dpop_jkt"


class InvalidDPoPProofError(OAuth2Error):
    """RFC 9449 section 5: the proof is missing where it is required, or not valid."""

    error = "invalid_dpop_proof"
    status_code = 400


def proved_key(request: ParsedRequest, client) -> str | None:
    """The thumbprint of the key the request's proof was signed with; a client that
    registered `dpop_bound_access_tokens` must send one (RFC 9449 section 5.2)."""
    jkt = request.koppel.get(JKT_PARAMETER)
    if jkt is None and client.app.dpop_bound_access_tokens:
        raise InvalidDPoPProofError(
            description="this client must send a DPoP proof (dpop_bound_access_tokens)")
    return jkt


def check_binding(bound: str | None, jkt: str | None, what: str) -> None:
    """A code or refresh token bound to a key is redeemed only with a proof of that key."""
    if bound is None or bound == jkt:
        return
    if jkt is None:
        raise InvalidDPoPProofError(description=f"this {what} is bound to a DPoP key: "
                                                "send a proof signed with it")
    raise InvalidGrantError(f"this {what} is bound to another DPoP key than the proof's")
