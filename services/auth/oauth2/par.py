"""The pushed authorization request endpoint (RFC 9126 section 2).

The client authenticates exactly as at the token endpoint (every method it may register,
`none` for a public client: section 2), then its request is validated by the very
function /authorize uses (`check_request`), with every failure answered as a JSON OAuth
error. What passes is kept whole (every parameter, extensions included, minus the
client's credentials) and comes back at /authorize, where it is validated again. A DPoP
proof sent with the push binds the code to its key, like `dpop_jkt` (RFC 9449 section
10.1).
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import OAuth2Error

from services.auth.oauth2.authorization import Failure, check_request
from services.auth.oauth2.context import AuthContext
from services.auth.oauth2.dpop import JKT_PARAMETER
from services.auth.oauth2.pushed import CLIENT_AUTH_PARAMETERS, push
from services.auth.oauth2.requests import ParsedRequest
from services.auth.oauth2.server import KoppelAuthorizationServer
from shared.oauth import CLIENT_AUTH_METHODS

Answer = tuple[int, dict[str, Any], list[tuple[str, str]]]


def _refused(error: str, description: str) -> Answer:
    return 400, {"error": error, "error_description": description}, []


def push_request(ctx: AuthContext, parsed: ParsedRequest) -> Answer:
    """Authenticate the client, validate its authorization request and keep it: 201 with
    the `request_uri`, else the OAuth error."""
    try:
        # A server of this request (as /authorize's checks use): the client's whole row
        # (name, links for the consent page), read once for both steps.
        client = KoppelAuthorizationServer(ctx).authenticate_client(
            parsed, list(CLIENT_AUTH_METHODS), "pushed_authorization_request")
    except OAuth2Error as error:
        status, body, headers = error()
        return status, dict(body), list(headers)
    form = parsed.form
    if "request_uri" in form:
        return _refused("invalid_request", "request_uri cannot be pushed (RFC 9126 section 2.1)")
    if form.get("client_id", client.client_id) != client.client_id:
        return _refused("invalid_request", "client_id is not the client that authenticated")
    query = [("client_id", client.client_id)] + [
        (name, value) for name, value in parsed.form_items
        if name != "client_id" and name not in CLIENT_AUTH_PARAMETERS
    ]
    proved = parsed.koppel.get(JKT_PARAMETER)  # the key of a DPoP proof sent with the push
    if proved is not None:
        # RFC 9449 section 10.1: the proof binds the code like `dpop_jkt`; both must agree.
        if form.get(JKT_PARAMETER, proved) != proved:
            return _refused("invalid_dpop_proof",
                            "dpop_jkt is not the key of the request's DPoP proof")
        if JKT_PARAMETER not in form:
            query.append((JKT_PARAMETER, proved))
    checked = check_request(ctx, query)
    if isinstance(checked, Failure):
        return _refused(checked.error, checked.description)
    if not checked.active:
        return _refused("unauthorized_client", "this app is suspended")
    if checked.fapi and "redirect_uri" not in form:
        # FAPI 2.0 section 5.3.2.1: the redirect URI travels in the pushed request, so the
        # code can only ever go where the client said in its authenticated request.
        return _refused("invalid_request",
                        "a FAPI 2.0 client sends redirect_uri in its pushed request")
    ttl = ctx.settings.pushed_authorization_request_ttl
    request_uri = push(ctx.redis, ctx.keyring.digest_key, client.client_id, query, ttl)
    return 201, {"request_uri": request_uri, "expires_in": ttl}, []
