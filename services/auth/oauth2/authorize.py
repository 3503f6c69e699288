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


@router.get(
    "/authorize",
    response_class=HTMLResponse,
    responses={302: {"description": "to the app with an error"},
               303: {"description": "to login or consent"},
               400: {"description": "an invalid client or redirect URI (HTML page)"}},
)
async def authorize(request: Request, runtime: RuntimeDep) -> Response:
    """OAuth 2.0 authorization endpoint (authorization code with PKCE S256 only)."""
    issuer = runtime.settings.issuer
    lang = pick_language(request, request.query_params.get("ui_locales"))
    query = request.query_params.multi_items()
    if len(str(request.url.query)) > MAX_QUERY_LENGTH:
        failure = Failure("invalid_request", "the request is too long")
        return page("message.html", lang=lang, status=400, title_key="error_title",
                    detail=failure.description, error_code=failure.error)
    checked = await run_authlib(request, lambda ctx: check_request(ctx, query))
    if isinstance(checked, Failure):
        if checked.redirect_uri:
            return RedirectResponse(error_location(checked, issuer), status_code=302)
        shown = error_page(checked, issuer, lang)
        return page(shown.template, lang=lang, status=shown.status, **shown.context)
    if not checked.active:
        failure = Failure("access_denied", "this app is suspended", checked.redirect_uri,
                          checked.state)
        return RedirectResponse(error_location(failure, issuer), status_code=302)
    session = await current_session(runtime, request)
    needs_login = _needs_login(checked, session)
    if needs_login and "none" in checked.prompt:
        failure = Failure("login_required", "the user is not logged in", checked.redirect_uri,
                          checked.state)
        return RedirectResponse(error_location(failure, issuer), status_code=302)
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
