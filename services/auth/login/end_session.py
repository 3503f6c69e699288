"""OpenID Connect RP-initiated logout (`end_session_endpoint`): what a logout request
asks for, and whether Koppel may act on it without asking the user.

An app sends the browser here with `id_token_hint` (an ID token Koppel issued to it; an
expired one is fine), optionally `post_logout_redirect_uri` (only one the app registered
as `post_logout_redirect_uris`) and `state`. The login session ends at once when the
hint names the session's user; without a hint, or for another user, the user is asked
first, so a link on another site cannot log anyone out. The browser goes back only to a
registered URI, never to anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.auth.login import repository
from services.auth.oauth2.context import AuthContext
from shared.signing import ID_TOKEN_ALGS, jwks_document, published_keys


class BadLogout(Exception):
    """The logout request cannot be followed: say why, send the browser nowhere."""


@dataclass
class Logout:
    client_id: str | None
    subject: str | None  # the user the hint names
    return_to: str | None  # the registered URI to send the browser to, with state


def _hint_claims(ctx: AuthContext, hint: str) -> dict:
    keys = KeySet.import_key_set(jwks_document(published_keys(ctx.session)))  # type: ignore[arg-type]
    try:
        token = jwt.decode(hint, keys, algorithms=list(ID_TOKEN_ALGS))
    except (JoseError, ValueError) as error:
        raise BadLogout("the id_token_hint is not an ID token of this server") from error
    if token.claims.get("iss") != ctx.settings.issuer:  # `exp` is not checked: see above
        raise BadLogout("the id_token_hint is not an ID token of this server")
    return token.claims


def read(ctx: AuthContext, params: dict[str, str]) -> Logout:
    """The logout request of `params`, checked (BadLogout if it cannot be followed)."""
    claims = _hint_claims(ctx, params["id_token_hint"]) if params.get("id_token_hint") else {}
    audience = claims.get("aud")
    hinted = audience[0] if isinstance(audience, list) and audience else audience
    hinted = str(hinted) if hinted else None
    client_id = params.get("client_id") or hinted
    if hinted and client_id != hinted:
        raise BadLogout("client_id is not the audience of the id_token_hint")
    uri = params.get("post_logout_redirect_uri")
    if not uri:
        return Logout(client_id, claims.get("sub"), None)
    if not client_id:
        raise BadLogout("post_logout_redirect_uri needs id_token_hint or client_id")
    app = repository.app(ctx.session, client_id)
    if app is None or uri not in app.post_logout_redirect_uris:
        raise BadLogout("post_logout_redirect_uri is not registered for this client")
    state = params.get("state")
    query = urlencode({"state": state}) if state else ""
    return_to = f"{uri}{'&' if '?' in uri else '?'}{query}" if query else uri
    return Logout(client_id, claims.get("sub"), return_to)
