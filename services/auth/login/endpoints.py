"""The login form: email and password, then on to consent."""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from services.auth.deps import RuntimeDep, client_address
from services.auth.flow import (
    Pending,
    end_session,
    load_pending,
    same_browser,
    save_pending,
    start_session,
)
from services.auth.oauth2.authorize import consent_url
from services.auth.pages.i18n import TEXT, pick_language
from services.auth.pages.render import page
from shared import ratelimit
from shared.models import User
from shared.passwords import verify_password
from shared.runtime import Runtime

router = APIRouter(tags=["login"])


def _bad_request(lang: str) -> HTMLResponse:
    return page("message.html", lang=lang, status=400, title_key="error_title",
                lines=[("error_intro", {})])


def _login_form(lang: str, challenge: str, pending: Pending, *, error: str | None = None,
                status: int = 200, login_hint: str = "") -> HTMLResponse:
    return page("login.html", lang=lang, status=status, challenge=challenge, csrf=pending.csrf,
                app_name=pending.app_name, error=error, login_hint=login_hint)


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


def _check_password(runtime: Runtime, email: str, password: str) -> User | None:
    with runtime.session() as session:
        user = session.exec(select(User).where(User.email == email)).first()
    # The hash is verified even for an unknown user, so both take the same time.
    ok = verify_password(user.password_hash if user else None, password)
    return user if ok and user is not None and user.active else None


@router.post("/login", response_class=HTMLResponse,
             responses={303: {"description": "logged in: on to consent"},
                        429: {"description": "too many failed attempts"}})
async def login(
    request: Request,
    runtime: RuntimeDep,
    username: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    login_challenge: Annotated[str, Form(max_length=200)],
    csrf_token: Annotated[str, Form(max_length=200)],
) -> Response:
    """Check the email and password; answers 303 (never 307) on success."""
    settings = runtime.settings
    pending = await _valid_pending(runtime, request, login_challenge)
    lang = pick_language(request, dict(pending.query).get("ui_locales") if pending else None)
    if pending is None or not hmac.compare_digest(csrf_token, pending.csrf):
        return _bad_request(lang)
    email = username.strip().lower()
    limits = [
        (f"login:account:{email}", settings.failed_login_limit_per_account),
        (f"login:address:{client_address(request)}", settings.failed_login_limit_per_address),
    ]
    for name, limit in limits:
        wait = await ratelimit.retry_after(runtime.redis, name, limit)
        if wait is not None:
            response = _login_form(lang, login_challenge, pending, status=429,
                                   error=f"Too many failed attempts; try again in {wait} s.",
                                   login_hint=email)
            response.headers["Retry-After"] = str(wait)
            return response
    user = await run_in_threadpool(_check_password, runtime, email, password)
    if user is None:
        for name, _ in limits:
            await ratelimit.record(runtime.redis, name, settings.failed_attempt_window)
        return _login_form(lang, login_challenge, pending, status=401,
                           error=TEXT[lang]["login_failed"], login_hint=email)
    await ratelimit.reset(runtime.redis, limits[0][0])
    response = RedirectResponse(consent_url(runtime, login_challenge), status_code=303)
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
