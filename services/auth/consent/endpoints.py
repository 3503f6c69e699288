"""The consent page: show what the app asks for, and record the user's decision."""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.auth.consent.decide import (
    INTERACTIVE,
    NeedLogin,
    Redirect,
    ShowPage,
    decide,
    record_approval_request,
    record_decision,
)
from services.auth.deps import RuntimeDep, run_authlib
from services.auth.login.sessions import current_session, end_session
from services.auth.oauth2.authorize import login_url
from services.auth.oauth2.pending import (
    Pending,
    drop_pending,
    load_pending,
    same_browser,
    save_pending,
)
from services.auth.pages.i18n import pick_language
from services.auth.pages.render import page
from shared.metrics import CONSENT_DECISIONS
from shared.runtime import Runtime

router = APIRouter(tags=["consent"])


def _bad_request(lang: str) -> HTMLResponse:
    return page(
        "message.html", lang=lang, status=400, title_key="error_title", lines=[("error_intro", {})]
    )


async def _pending_for_user(runtime: Runtime, request: Request, challenge: str) -> Pending | None:
    """The pending request, if it belongs to this browser and its logged-in user."""
    pending = await load_pending(runtime, challenge)
    if pending is None or pending.user_id is None or not same_browser(runtime, request, pending):
        return None
    session = await current_session(runtime, request)
    if session is None or session["user_id"] != pending.user_id:
        return None
    return pending


async def _posted_pending(runtime: Runtime, request: Request, challenge: str,
                          csrf_token: str) -> Pending | None:
    """The pending request a consent page's form was posted for: this browser's and its
    logged-in user's, with the page's CSRF token."""
    pending = await _pending_for_user(runtime, request, challenge)
    if pending is None or not hmac.compare_digest(csrf_token, pending.csrf):
        return None
    return pending


async def _render(
    runtime: Runtime,
    outcome,
    challenge: str,
    pending: Pending,
    lang: str,
    *,
    status_code: int = 303,
) -> Response:
    if isinstance(outcome, Redirect):
        await drop_pending(runtime, challenge)
        return RedirectResponse(outcome.location, status_code=status_code)
    if isinstance(outcome, NeedLogin):
        pending.user_id, pending.force_login = None, True
        await save_pending(runtime, pending, challenge)
        return RedirectResponse(login_url(runtime, challenge), status_code=303)
    assert isinstance(outcome, ShowPage)
    if outcome.template not in INTERACTIVE:
        await drop_pending(runtime, challenge)
    elif runtime.settings.consent_ui_url:
        target = f"{runtime.settings.consent_ui_url}?{urlencode({'consent_challenge': challenge})}"
        return RedirectResponse(target, status_code=303)
    return page(
        outcome.template,
        lang=lang,
        status=outcome.status,
        challenge=challenge,
        csrf=pending.csrf,
        manage_apps_url=runtime.settings.manage_apps_url,
        **outcome.context,
    )


@router.get("/consent", response_class=HTMLResponse)
async def consent_page(
    request: Request, runtime: RuntimeDep, consent_challenge: str = ""
) -> Response:
    """The consent page of a pending request, or straight back to the app when nothing
    new is asked (remembered consent) or the app is first-party."""
    lang = pick_language(request, request.query_params.get("ui_locales"))
    pending = await _pending_for_user(runtime, request, consent_challenge)
    if pending is None or pending.user_id is None or pending.auth_time is None:
        return _bad_request(lang)
    user_id, auth_time = pending.user_id, pending.auth_time
    lang = pick_language(request, dict(pending.query).get("ui_locales"))
    outcome, _ = await run_authlib(
        request, lambda ctx: decide(ctx, pending.query, user_id, auth_time, lang)
    )
    return await _render(runtime, outcome, consent_challenge, pending, lang)


@router.post(
    "/consent",
    response_class=HTMLResponse,
    responses={303: {"description": "back to the app with a code or an error"}},
)
async def consent_decision(
    request: Request,
    runtime: RuntimeDep,
    consent_challenge: Annotated[str, Form(max_length=200)],
    decision: Annotated[str, Form(pattern="^(allow|deny)$")],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    debtor_id: Annotated[str, Form(max_length=64)] = "",
    company_id: Annotated[list[str] | None, Form(max_length=64)] = None,
) -> Response:
    """Record allow or deny for the pending request, then send the browser back."""
    pending = await _posted_pending(runtime, request, consent_challenge, csrf_token)
    if pending is None:
        return _bad_request(pick_language(request))
    lang = pick_language(request, dict(pending.query).get("ui_locales"))
    outcome = await run_authlib(
        request,
        lambda ctx: record_decision(
            ctx, pending, decision == "allow", debtor_id, company_id or [], lang
        ),
    )
    CONSENT_DECISIONS.labels(decision).inc()
    return await _render(runtime, outcome, consent_challenge, pending, lang)


@router.post(
    "/consent/approval-request",
    response_class=HTMLResponse,
    responses={303: {"description": "back to the app: access_denied, approval pending"}},
)
async def approval_request(
    request: Request,
    runtime: RuntimeDep,
    consent_challenge: Annotated[str, Form(max_length=200)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    justification: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Ask for approval of the app (the approval page's form): a consent request is
    recorded and the browser goes back to the app with access_denied, approval pending."""
    pending = await _posted_pending(runtime, request, consent_challenge, csrf_token)
    if pending is None:
        return _bad_request(pick_language(request))
    lang = pick_language(request, dict(pending.query).get("ui_locales"))
    outcome = await run_authlib(
        request, lambda ctx: record_approval_request(ctx, pending, justification, lang))
    return await _render(runtime, outcome, consent_challenge, pending, lang)


@router.post(
    "/switch-account",
    response_class=HTMLResponse,
    responses={303: {"description": "logged out: back to the login page of the same request"}},
)
async def switch_account(
    request: Request,
    runtime: RuntimeDep,
    consent_challenge: Annotated[str, Form(max_length=200)],
    csrf_token: Annotated[str, Form(max_length=200)],
) -> Response:
    """"Not you?" on the consent page: end this browser's login session and go back to
    the login page of the same pending authorization request, which forgets its user
    (nothing of the old session is kept); after the next login, the consent page."""
    pending = await load_pending(runtime, consent_challenge)
    lang = pick_language(request, dict(pending.query).get("ui_locales") if pending else None)
    if (pending is None or not same_browser(runtime, request, pending)
            or not hmac.compare_digest(csrf_token, pending.csrf)):
        return _bad_request(lang)
    pending.user_id, pending.auth_time, pending.force_login = None, None, True
    await save_pending(runtime, pending, consent_challenge)
    response = RedirectResponse(login_url(runtime, consent_challenge), status_code=303)
    await end_session(runtime, request, response)
    return response
