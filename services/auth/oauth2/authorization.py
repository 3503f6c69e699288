"""Validating authorization requests and answering them, through Authlib.

Every answer that goes back to the app carries `iss` (RFC 9207), errors included.
An error goes back to the app only when the client and the redirect URI are valid;
otherwise the user sees an error page and the app hears nothing.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.errors import OAuth2Error

from services.auth.oauth2.context import AuthContext
from services.auth.oauth2.grant_management import GrantRefused, GrantRequest, grant_request
from services.auth.oauth2.requests import ParsedRequest
from services.auth.oauth2.server import KoppelAuthorizationServer
from services.auth.pages.repository import has_logo
from shared.models import App, Connection, User
from shared.oauth import is_fapi
from shared.scopes import parse_scope

PROMPTS = {"none", "login", "consent", "select_account"}
# RFC 9449 section 10: a JWK SHA-256 thumbprint, base64url without padding.
DPOP_JKT = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass
class Failure:
    """An authorization request that failed; `redirect_uri` set when the app may be told."""

    error: str
    description: str
    redirect_uri: str | None = None
    state: str | None = None


@dataclass
class Checked:
    """A valid authorization request, with what the login and consent steps need."""

    client_id: str
    app_id: str
    app: dict
    first_party: bool
    active: bool
    # Where a first-party app reaches (shared/policy/apps.py): its environment, or all.
    platform: bool
    environment_id: uuid.UUID | None
    redirect_uri: str
    scopes: list[str]
    state: str | None
    prompt: set[str] = field(default_factory=set)
    max_age: int | None = None
    login_hint: str = ""
    ui_locales: str | None = None
    # The client registered `require_pushed_authorization_requests` (RFC 9126 section 6),
    # and whether it is a FAPI 2.0 client (shared.oauth.is_fapi).
    pushed_only: bool = False
    fapi: bool = False
    # Grant Management (services/auth/oauth2/grant_management.py): none by default.
    grant: GrantRequest = field(default_factory=GrantRequest)
    # The scopes the app is registered for (a grant's tokens never carry more).
    registered_scopes: list[str] = field(default_factory=list)


def with_iss(location: str, issuer: str) -> str:
    return add_params_to_uri(location, [("iss", issuer)])


def error_location(failure: Failure, issuer: str) -> str:
    params = [("error", failure.error)]
    if failure.description:
        params.append(("error_description", failure.description))
    if failure.state:
        params.append(("state", failure.state))
    params.append(("iss", issuer))
    return add_params_to_uri(failure.redirect_uri or "", params)


def _logo_url(ctx: AuthContext, app: App) -> str | None:
    """Koppel's own address of the app's logo, if it registered one."""
    if not has_logo(ctx.session, app.id):
        return None
    return f"/apps/{quote(app.client_id, safe='')}/logo"


def _request(ctx: AuthContext, query: list[tuple[str, str]]) -> ParsedRequest:
    uri = f"{ctx.settings.issuer}/authorize?{urlencode(query)}"
    return ParsedRequest("GET", uri, {}, query=query)


UNSUPPORTED_PARAMETERS = ("request", "request_uri")


def _grant(ctx: AuthContext, query: list[tuple[str, str]]):
    server = KoppelAuthorizationServer(ctx)
    request = _request(ctx, query)
    return server, request, server.get_consent_grant(request=request)


def check_request(ctx: AuthContext, query: list[tuple[str, str]]) -> Checked | Failure:
    """Validate an authorization request as Authlib and Koppel's rules say."""
    data = dict(query)
    try:
        _, request, _ = _grant(ctx, query)
    except OAuth2Error as exc:
        return Failure(
            exc.error or "server_error", exc.description or "", exc.redirect_uri, data.get("state")
        )
    except ValueError:
        # Authlib refuses to quote characters that RFC 6749 bans from error descriptions
        # (a redirect_uri or response_type with `"`, `\` or non-ASCII): malformed, no redirect.
        return Failure("invalid_request", "the request contains characters it may not")
    client = request.client
    redirect_uri = data.get("redirect_uri") or client.get_default_redirect_uri()
    prompt = set((data.get("prompt") or "").split())
    if not prompt <= PROMPTS or ("none" in prompt and len(prompt) > 1):
        return Failure("invalid_request", "unsupported prompt value", redirect_uri,
                       data.get("state"))
    # Request objects (RFC 9101) are not supported, and discovery says so: answered, never
    # silently ignored (the app would think its signed parameters were honoured). A pushed
    # request's `request_uri` never gets here: /authorize swaps it for the pushed
    # parameters (services/auth/oauth2/pushed.py), and PAR refuses one in its body.
    for parameter in UNSUPPORTED_PARAMETERS:
        if parameter in data:
            return Failure(f"{parameter}_not_supported",
                           f"the {parameter} parameter is not supported", redirect_uri,
                           data.get("state"))
    dpop_jkt = data.get("dpop_jkt")
    if dpop_jkt is not None and not DPOP_JKT.fullmatch(dpop_jkt):
        return Failure("invalid_request", "dpop_jkt must be a JWK SHA-256 thumbprint "
                       "(43 base64url characters)", redirect_uri, data.get("state"))
    max_age = data.get("max_age")
    if max_age is not None and (not max_age.isdigit() or len(max_age) > 9):
        return Failure("invalid_request", "max_age must be a whole number of seconds",
                       redirect_uri, data.get("state"))
    app = client.app
    grant = grant_request(query, first_party=app.first_party, public=client.is_public)
    if isinstance(grant, GrantRefused):
        return Failure(grant.error, grant.description, redirect_uri, data.get("state"))
    return Checked(
        client_id=app.client_id,
        app_id=str(app.id),
        app={"name": app.name, "publisher": app.publisher or app.name,
             "client_uri": app.client_uri, "policy_uri": app.policy_uri,
             "tos_uri": app.tos_uri, "logo_url": _logo_url(ctx, app)},
        first_party=app.first_party,
        active=client.active,
        platform=app.platform,
        environment_id=app.environment_id,
        redirect_uri=redirect_uri,
        scopes=parse_scope(request.scope),
        state=data.get("state"),
        prompt=prompt,
        max_age=int(max_age) if max_age is not None else None,
        login_hint=data.get("login_hint", "")[:320],
        ui_locales=data.get("ui_locales"),
        pushed_only=bool(app.require_pushed_authorization_requests),
        fapi=is_fapi(app),
        grant=grant,
        registered_scopes=list(app.scopes or []),
    )


def issue_code(
    ctx: AuthContext, query: list[tuple[str, str]], user: User, connection: Connection | None,
    auth_time, scopes: list[str] | None = None,
) -> str:
    """Issue the authorization code (for `scopes`, else the requested ones); returns
    where to send the browser (with `iss`)."""
    try:
        server, request, grant = _grant(ctx, query)
    except OAuth2Error as exc:
        data = dict(query)
        failure = Failure(
            exc.error or "server_error", exc.description or "", exc.redirect_uri, data.get("state")
        )
        return error_location(failure, ctx.settings.issuer) if failure.redirect_uri else ""
    request.koppel.update(connection=connection, auth_time=auth_time, scopes=scopes)
    _, _, headers = server.create_authorization_response(
        request=request, grant_user=user, grant=grant
    )
    return with_iss(dict(headers)["Location"], ctx.settings.issuer)
