"""Why a client could not authenticate, in words (RFC 6749 section 5.2 `invalid_client`).

Authlib's own answer lists the methods it tried as a Python list and always sends
`WWW-Authenticate: Basic`. Koppel says what was wrong (no credentials, an unknown client,
the wrong method for this client, a wrong secret, an assertion that did not verify) and
sends the Basic challenge only to a client that used HTTP Basic.
"""

from __future__ import annotations

from collections.abc import Callable

from authlib.oauth2.rfc6749.errors import InvalidClientError

from services.auth.client_credentials import ASSERTION_TYPE, claimed_client_id, uses_basic
from services.auth.oauth2.requests import ParsedRequest

# What Authlib itself says (no method matched; an unknown client_id in the form); anything
# else was said by one of Koppel's methods and is kept.
_AUTHLIB_GENERIC = ("The client cannot authenticate with methods",
                    "The client does not exist on this server")


class ClientAuthFailed(InvalidClientError):
    """`invalid_client`, 401, with a challenge only for a client that used HTTP Basic."""

    def __init__(self, description: str, *, basic: bool) -> None:
        super().__init__(status_code=401, description=description)
        self.basic = basic

    def get_headers(self) -> list[tuple[str, str]]:
        headers = super(InvalidClientError, self).get_headers()
        if self.basic:
            headers.append(("WWW-Authenticate", 'Basic realm="koppel", error="invalid_client"'))
        return headers


def used_method(request: ParsedRequest) -> str:
    """The client authentication method the request tried."""
    if uses_basic(request.headers.get("authorization", "")):
        return "client_secret_basic"
    form = request.form
    if form.get("client_assertion_type") == ASSERTION_TYPE or "client_assertion" in form:
        return "private_key_jwt"
    if "client_secret" in form:
        return "client_secret_post"
    return "none"


def explain(error: InvalidClientError, request: ParsedRequest,
            query_client: Callable[[str], object | None]) -> ClientAuthFailed:
    """`error` (raised while authenticating the client of `request`) told in words."""
    used = used_method(request)
    basic = used == "client_secret_basic"
    said = error.description or ""
    if said and not said.startswith(_AUTHLIB_GENERIC):
        return ClientAuthFailed(said, basic=basic)
    claimed = claimed_client_id(request.headers, request.form)
    if claimed == "-":
        return ClientAuthFailed(
            "no client authentication: use the method the client registered (HTTP Basic, "
            "client_secret_post or private_key_jwt), or send client_id for a public client",
            basic=basic)
    client = query_client(claimed)
    registered = getattr(getattr(client, "app", None), "token_endpoint_auth_method", None)
    if client is None or registered is None:
        return ClientAuthFailed("unknown client", basic=basic)
    if registered != used:
        return ClientAuthFailed(
            f"this client authenticates with {registered}, not {used}", basic=basic)
    if used == "private_key_jwt":
        return ClientAuthFailed("the client assertion did not verify", basic=basic)
    if used == "none":
        return ClientAuthFailed("this endpoint needs an authenticated client", basic=basic)
    return ClientAuthFailed("the client secret is not correct", basic=basic)
