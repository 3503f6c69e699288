"""The login form: email and password, then on to consent."""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.auth.deps import RuntimeDep, client_address, run_authlib
from services.auth.login.end_session import BadLogout
from services.auth.login.end_session import read as read_logout
from services.auth.login.service import TooManyFailures, authenticate
from services.auth.login.sessions import current_session, end_session, start_session
from services.auth.oauth2.authorize import consent_url
from services.auth.oauth2.pending import (
    Pending,
    drop_pending,
    load_pending,
    same_browser,
    save_pending,
)
from services.auth.pages.i18n import TEXT, pick_language
from services.auth.pages.render import page
from shared.runtime import Runtime

router = APIRouter(tags=["login"])


def _bad_request(lang: str) -> HTMLResponse:
    return page(
        "message.html", lang=lang, status=400, title_key="error_title", lines=[("error_intro", {})]
    )


def _login_form(
    lang: str,
    challenge: str,
    pending: Pending,
    *,
    error: str | None = None,
    status: int = 200,
    login_hint: str = "",
) -> HTMLResponse:
    return page(
        "login.html",
        lang=lang,
        status=status,
        challenge=challenge,
        csrf=pending.csrf,
        app_name=pending.app_name,
        error=error,
        login_hint=login_hint,
    )


async def _valid_pending(runtime: Runtime, request: Request, challenge: str) -> Pending | None:
    pending = await load_pending(runtime, challenge)
    if pending is None or not same_browser(runtime, request, pending):
        return None
    return pending


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, runtime: RuntimeDep, login_challenge: str = "") -> Response:
    """The login page of a pending authorization request."""
    lang = pick_language(request, request.query_params.get("ui_locales"))
    pending = await _valid_pending(runtime, request, login_challenge)
    if pending is None:
        return _bad_request(lang)
    lang = pick_language(request, dict(pending.query).get("ui_locales"))
    hint = dict(pending.query).get("login_hint", "")[:320]
    return _login_form(lang, login_challenge, pending, login_hint=hint)


@router.post(
    "/login",
    response_class=HTMLResponse,
    responses={
        303: {"description": "logged in: on to consent"},
        429: {"description": "too many failed attempts"},
    },
)
async def login(
    request: Request,
    runtime: RuntimeDep,
    username: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    login_challenge: Annotated[str, Form(max_length=200)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Check the email and password; answers 303 (never 307) on success."""
    pending = await _valid_pending(runtime, request, login_challenge)
    lang = pick_language(request, dict(pending.query).get("ui_locales") if pending else None)
    if pending is None or not hmac.compare_digest(csrf_token, pending.csrf):
        return _bad_request(lang)
    result = await authenticate(runtime, username, password, client_address(request),
                                [pending.client_id])
    if isinstance(result, TooManyFailures):
        response: Response = _login_form(
            lang,
            login_challenge,
            pending,
            status=429,
            error=TEXT[lang]["too_many"].format(seconds=result.retry_after),
            login_hint=username,
        )
        response.headers["Retry-After"] = str(result.retry_after)
        return response
    if result is None:
        return _login_form(
            lang,
            login_challenge,
            pending,
            status=401,
            error=TEXT[lang]["login_failed"],
            login_hint=username,
        )
    user = result
    response = RedirectResponse(consent_url(login_challenge), status_code=303)
    now = time.time()
    await start_session(runtime, response, str(user.id), now)
    pending.user_id, pending.auth_time, pending.force_login = str(user.id), now, False
    await save_pending(runtime, pending, login_challenge)
    return response


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request, runtime: RuntimeDep) -> Response:
    """End the login session of this browser."""
    response = page("message.html", lang=pick_language(request), title_key="logged_out")
    await end_session(runtime, request, response)
    return response


@router.get("/end-session", response_class=HTMLResponse, operation_id="login.getEndSession",
            responses={303: {"description": "logged out: back to the app"}})
@router.post("/end-session", response_class=HTMLResponse, operation_id="login.postEndSession",
             responses={303: {"description": "logged out: back to the app"}})
async def end_session_endpoint(request: Request, runtime: RuntimeDep) -> Response:
    """OpenID Connect RP-initiated logout: `id_token_hint`, `post_logout_redirect_uri`
    (one the app registered), `state`, `client_id` (login/end_session.py)."""
    params = (dict(request.query_params) if request.method == "GET"
              else {k: v for k, v in (await request.form()).items() if isinstance(v, str)})
    lang = pick_language(request, params.get("ui_locales"))
    try:
        logout = await run_authlib(request, lambda ctx: read_logout(ctx, params),
                                   read_only=True)
    except BadLogout as error:
        return page("message.html", lang=lang, status=400, title_key="error_title",
                    detail=str(error), error_code="invalid_request")
    session = await current_session(runtime, request)
    confirmed = request.method == "POST" and params.get("confirm") == "yes"
    if session is not None and not confirmed and logout.subject != session["user_id"]:
        # Not proven to come from an app of this session's user: ask first.
        return page("message.html", lang=lang, title_key="logout_title",
                    lines=[("logout_question", {})], end_session={
                        "client_id": logout.client_id, "state": params.get("state"),
                        "post_logout_redirect_uri": params.get("post_logout_redirect_uri")})
    response: Response = (
        RedirectResponse(logout.return_to, status_code=303) if logout.return_to
        else page("message.html", lang=lang, title_key="logged_out"))
    await end_session(runtime, request, response)
    return response


@router.get(
    "/login/continue",
    response_class=HTMLResponse,
    responses={303: {"description": "logged in: on to consent"}},
)
async def login_continue(
    request: Request, runtime: RuntimeDep, login_verifier: str = ""
) -> Response:
    """Where a SaaS frontend sends the browser after its backend accepted a login
    challenge: Koppel starts its session in this browser, then goes on to consent."""
    pending = await _valid_pending(runtime, request, login_verifier)
    lang = pick_language(request, dict(pending.query).get("ui_locales") if pending else None)
    if pending is None or pending.user_id is None:
        return _bad_request(lang)
    await drop_pending(runtime, login_verifier)
    consent_challenge = await save_pending(runtime, pending)
    response = RedirectResponse(consent_url(consent_challenge), status_code=303)
    await start_session(runtime, response, pending.user_id, float(pending.auth_time or time.time()))
    return response
