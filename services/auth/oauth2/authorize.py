"""The authorization endpoint: validate, then send the browser to login or consent."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.auth.consent.decide import error_page
from services.auth.deps import RuntimeDep, run_authlib
from services.auth.login.sessions import current_session
from services.auth.oauth2.authorization import Checked, Failure, check_request, error_location
from services.auth.oauth2.pending import Pending, ensure_browser_cookie, save_pending
from services.auth.oauth2.pushed import is_pushed_reference, take
from services.auth.pages.i18n import pick_language
from services.auth.pages.render import page

router = APIRouter(tags=["oauth2"])

MAX_QUERY_LENGTH = 8192


def login_url(runtime, challenge: str) -> str:
    base = runtime.settings.login_ui_url or "/login"
    return f"{base}?{urlencode({'login_challenge': challenge})}"


def consent_url(challenge: str) -> str:
    """Koppel's own consent step; it hands over to KOPPEL_CONSENT_UI_URL only when a
    consent page is really needed."""
    return f"/consent?{urlencode({'consent_challenge': challenge})}"


def _needs_login(checked: Checked, session: dict | None) -> bool:
    if session is None or "login" in checked.prompt or "select_account" in checked.prompt:
        return True
    if checked.max_age is not None:
        return time.time() - float(session["auth_time"]) > checked.max_age
    return False


def _refused_page(lang: str, failure: Failure) -> Response:
    return page("message.html", lang=lang, status=400, title_key="error_title",
                detail=failure.description, error_code=failure.error)


def _to_app(failure: Failure, issuer: str) -> Response:
    # FAPI 2.0 section 5.3.2.2: the authorization server redirects with 303 See Other.
    return RedirectResponse(error_location(failure, issuer), status_code=303)


async def _pushed(runtime, request: Request) -> list[tuple[str, str]] | Failure | None:
    """The parameters of the pushed request named by `request_uri` (RFC 9126 section 4),
    taken once; every other parameter of the URL but `client_id` is ignored. None when
    the URL names no pushed request."""
    request_uri = request.query_params.get("request_uri")
    if not is_pushed_reference(request_uri):
        return None  # absent, or a request_uri that is refused as unsupported
    client_id = request.query_params.get("client_id")
    pushed = await take(runtime.redis, runtime.keyring.digest_key, client_id, str(request_uri))
    if pushed is None:
        return Failure("invalid_request_uri",
                       "the request_uri is unknown, used, expired or not this client's")
    return pushed


@router.get(
    "/authorize",
    response_class=HTMLResponse,
    responses={303: {"description": "to login or consent, or to the app with an error"},
               400: {"description": "an invalid client, redirect URI or request_uri "
                                    "(HTML page)"}},
)
async def authorize(request: Request, runtime: RuntimeDep) -> Response:
    """OAuth 2.0 authorization endpoint (authorization code with PKCE S256 only); with
    `client_id` and a `request_uri` from the PAR endpoint, it runs the pushed request."""
    issuer = runtime.settings.issuer
    lang = pick_language(request, request.query_params.get("ui_locales"))
    query = request.query_params.multi_items()
    if len(str(request.url.query)) > MAX_QUERY_LENGTH:
        return _refused_page(lang, Failure("invalid_request", "the request is too long"))
    pushed = await _pushed(runtime, request)
    if isinstance(pushed, Failure):
        return _refused_page(lang, pushed)
    if pushed is not None:
        query = pushed
    checked = await run_authlib(request, lambda ctx: check_request(ctx, query))
    if isinstance(checked, Failure):
        if checked.redirect_uri:
            return _to_app(checked, issuer)
        shown = error_page(checked, issuer, lang)
        return page(shown.template, lang=lang, status=shown.status, **shown.context)
    if pushed is None and (checked.pushed_only
                           or runtime.settings.require_pushed_authorization_requests):
        # RFC 9126 section 4: a client (or a server) that requires PAR gets no request
        # through the front channel.
        return _to_app(Failure("invalid_request", "pushed authorization request required",
                               checked.redirect_uri, checked.state), issuer)
    if not checked.active:
        return _to_app(Failure("access_denied", "this app is suspended", checked.redirect_uri,
                               checked.state), issuer)
    session = await current_session(runtime, request)
    needs_login = _needs_login(checked, session)
    if needs_login and "none" in checked.prompt:
        return _to_app(Failure("login_required", "the user is not logged in",
                               checked.redirect_uri, checked.state), issuer)
    response = RedirectResponse("", status_code=303)
    pending = Pending(
        query=query, client_id=checked.client_id, app_name=checked.app["name"],
        browser=ensure_browser_cookie(runtime, request, response),
        force_login=needs_login,
    )
    if not needs_login and session is not None:
        pending.user_id, pending.auth_time = session["user_id"], session["auth_time"]
    challenge = await save_pending(runtime, pending)
    target = login_url(runtime, challenge) if needs_login else consent_url(challenge)
    response.headers["location"] = target
    return response
