"""Login and consent challenges for SaaS frontends that draw their own screens.

With KOPPEL_LOGIN_UI_URL / KOPPEL_CONSENT_UI_URL set, the browser is sent to the
frontend with a one-time challenge; the frontend's backend (a first-party client, HTTP
Basic) reads it here and accepts or rejects it, then sends the browser to `redirect_to`.

A platform-wide backend handles every challenge. A backend bound to an environment
handles only its own authorization requests and those of third-party apps, and only for
users of its environment: a login it accepts must be of such a user (anyone else gets
the answer of a wrong password), and a consent challenge of another environment's user
answers 404 and stays as it was (shared/policy/apps.py).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request

from services.auth.challenges import service
from services.auth.challenges.schemas import (
    AcceptConsent,
    AcceptLogin,
    ConsentRequest,
    LoginRequest,
    Redirect,
    Reject,
    RequestApproval,
)
from services.auth.consent.decide import Redirect as Go
from services.auth.consent.decide import ShowPage, record_approval_request, record_decision
from services.auth.deps import FirstPartyClient, RuntimeDep, run_authlib
from services.auth.login.service import TooManyFailures, authenticate
from services.auth.oauth2.pending import Pending, drop_pending, load_pending, save_pending
from services.auth.pages.i18n import pick_language
from shared.errors import Conflict, Invalid, NotFound, RateLimited, Unauthorized
from shared.models import App
from shared.receipts import Method
from shared.runtime import Runtime
from shared.scopes import parse_scope

router = APIRouter(prefix="/oauth2", tags=["challenges"])
PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not a first-party client"},
    404: {"description": "unknown or used challenge"},
}


async def _pending(request: Request, runtime: Runtime, caller: App, challenge: str, *,
                   logged_in: bool) -> Pending:
    """The challenge, if it exists in this state and the caller may handle it; else 404
    (the same answer whether it does not exist or is out of the caller's reach)."""
    pending = await load_pending(runtime, challenge)
    if pending is None or (pending.user_id is not None) != logged_in or not await run_authlib(
            request, lambda ctx: service.caller_reaches(ctx, caller, pending), read_only=True):
        raise NotFound("no such challenge (it may have been used or have expired)")
    return pending


@router.get("/login-requests/{challenge}", response_model=LoginRequest, responses=PROBLEMS)
async def get_login_request(
    challenge: str, request: Request, runtime: RuntimeDep, caller: FirstPartyClient
) -> LoginRequest:
    """What a login challenge is about: the app and the scopes it asks for."""
    pending = await _pending(request, runtime, caller, challenge, logged_in=False)
    client = await run_authlib(request, lambda ctx: service.client_info(ctx, pending.client_id))
    data = dict(pending.query)
    return LoginRequest(
        challenge=challenge,
        client=client,
        requested_scopes=parse_scope(data.get("scope")),
        login_hint=data.get("login_hint", "")[:320],
        ui_locales=data.get("ui_locales"),
    )


@router.post(
    "/login-requests/{challenge}/accept",
    response_model=Redirect,
    responses={**PROBLEMS, 429: {"description": "too many failed attempts"}},
)
async def accept_login(
    challenge: str, body: AcceptLogin, request: Request, runtime: RuntimeDep,
    caller: FirstPartyClient,
) -> Redirect:
    """Log the user in with their credentials; the browser goes on to `redirect_to`.
    A user that the request's app or the calling backend does not admit (another
    environment's, for a bound app) gets the answer of a wrong password."""
    pending = await _pending(request, runtime, caller, challenge, logged_in=False)
    result = await authenticate(runtime, body.username, body.password, body.remote_address,
                                [pending.client_id, caller.client_id])
    if isinstance(result, TooManyFailures):
        raise RateLimited(result.retry_after, "too many failed attempts for this login")
    if result is None:
        raise Unauthorized("the email address or password is not correct")
    pending.user_id, pending.auth_time, pending.force_login = str(result.id), time.time(), False
    verifier = await save_pending(runtime, pending)
    await drop_pending(runtime, challenge)
    query = urlencode({"login_verifier": verifier})
    return Redirect(redirect_to=f"{runtime.settings.issuer}/login/continue?{query}")


@router.post("/login-requests/{challenge}/reject", response_model=Redirect, responses=PROBLEMS)
async def reject_login(
    challenge: str, body: Reject, request: Request, runtime: RuntimeDep,
    caller: FirstPartyClient,
) -> Redirect:
    """End the request without a login; `redirect_to` sends the error to the app."""
    pending = await _pending(request, runtime, caller, challenge, logged_in=False)
    location = await run_authlib(request, lambda ctx: service.rejection(ctx, pending, body))
    await drop_pending(runtime, challenge)
    return Redirect(redirect_to=location)


@router.get(
    "/consent-requests/{challenge}",
    response_model=ConsentRequest,
    responses={
        **PROBLEMS,
        403: {"description": "the user may not link apps"},
        409: {"description": "no consent needed"},
    },
)
async def get_consent_request(
    challenge: str, request: Request, runtime: RuntimeDep, caller: FirstPartyClient
) -> ConsentRequest:
    """What to ask the user: the app, the new scopes, the debtor and its companies."""
    pending = await _pending(request, runtime, caller, challenge, logged_in=True)
    lang = pick_language(request, dict(pending.query).get("ui_locales"))
    return await run_authlib(
        request, lambda ctx: service.consent_request(ctx, challenge, pending, lang)
    )


async def _decide_consent(
    request: Request,
    runtime: Runtime,
    caller: App,
    challenge: str,
    allow: bool,
    debtor_id: str,
    company_ids: list[str],
) -> Redirect:
    pending = await _pending(request, runtime, caller, challenge, logged_in=True)
    lang = pick_language(request, dict(pending.query).get("ui_locales"))
    outcome = await run_authlib(
        request, lambda ctx: record_decision(ctx, pending, allow, debtor_id, company_ids, lang,
                                             Method.CHALLENGE_API)
    )
    if isinstance(outcome, ShowPage) and outcome.template == "consent.html":
        # Only after a renewal (decide._renew): the request also changes the link.
        raise Invalid("the link is renewed, and the request changes it further: read the "
                      "consent request again and ask the user")
    if not isinstance(outcome, Go):
        detail = outcome.context.get("detail") if isinstance(outcome, ShowPage) else None
        raise Invalid(detail or "the consent cannot be recorded for this request")
    await drop_pending(runtime, challenge)
    return Redirect(redirect_to=outcome.location)


@router.post(
    "/consent-requests/{challenge}/accept",
    response_model=Redirect,
    responses={**PROBLEMS, 422: {"description": "debtor or companies out of reach"}},
)
async def accept_consent(
    challenge: str,
    body: AcceptConsent,
    request: Request,
    runtime: RuntimeDep,
    caller: FirstPartyClient,
) -> Redirect:
    """Grant the requested scopes for the debtor and companies; `redirect_to` carries the code."""
    return await _decide_consent(request, runtime, caller, challenge, True,
                                 str(body.debtor_id), [str(c) for c in body.company_ids])


@router.post("/consent-requests/{challenge}/reject", response_model=Redirect, responses=PROBLEMS)
async def reject_consent(
    challenge: str, request: Request, runtime: RuntimeDep, caller: FirstPartyClient
) -> Redirect:
    """Deny: `redirect_to` sends access_denied to the app."""
    return await _decide_consent(request, runtime, caller, challenge, False, "", [])


@router.post(
    "/consent-requests/{challenge}/request-approval",
    response_model=Redirect,
    responses={**PROBLEMS, 409: {"description": "this request needs no approval"}},
)
async def request_approval(
    challenge: str, body: RequestApproval, request: Request, runtime: RuntimeDep,
    caller: FirstPartyClient,
) -> Redirect:
    """For a challenge in state `approval_required`: record the consent request with the
    user's justification; `redirect_to` sends access_denied (approval pending) to the
    app. Any other state: 409 (read the challenge again)."""
    pending = await _pending(request, runtime, caller, challenge, logged_in=True)
    lang = pick_language(request, dict(pending.query).get("ui_locales"))
    outcome = await run_authlib(
        request, lambda ctx: record_approval_request(ctx, pending, body.justification, lang))
    if not isinstance(outcome, Go):
        raise Conflict("this request needs no approval request: read it again")
    await drop_pending(runtime, challenge)
    return Redirect(redirect_to=outcome.location)
