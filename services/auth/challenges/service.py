"""What the challenge API decides: whether a calling backend may handle a challenge, and
what it is shown of one (docs/product.md 5.2; the reach rules are shared/policy/apps.py)."""

from __future__ import annotations

from urllib.parse import urlencode

from services.auth.challenges import repository
from services.auth.challenges.schemas import (
    ClientInfo,
    ConsentRequest,
    DebtorInfo,
    Reject,
    ScopeInfo,
    UserInfo,
)
from services.auth.consent.decide import INTERACTIVE, ShowPage, decide
from services.auth.oauth2.authorization import Failure, check_request, error_location
from services.auth.oauth2.context import AuthContext
from services.auth.oauth2.pending import Pending
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from shared.models import App
from shared.policy.apps import is_platform, may_handle_challenge, reaches_environment


def caller_reaches(ctx: AuthContext, caller: App, pending: Pending) -> bool:
    """Whether the calling backend may read and answer this challenge."""
    if is_platform(caller):
        return True
    app = repository.app(ctx.session, pending.client_id)
    if app is None or not may_handle_challenge(caller, caller.client_id, app, app.client_id):
        return False
    if pending.user_id is None:
        return True
    user = repository.user(ctx.session, pending.user_id)
    return user is not None and reaches_environment(caller, user.environment_id)


def client_info(ctx: AuthContext, client_id: str) -> ClientInfo:
    app = repository.app(ctx.session, client_id)
    if app is None:
        raise NotFound("the app of this challenge no longer exists")
    return ClientInfo(
        client_id=app.client_id,
        name=app.name,
        publisher=app.publisher,
        client_uri=app.client_uri,
        policy_uri=app.policy_uri,
        tos_uri=app.tos_uri,
    )


def rejection(ctx: AuthContext, pending: Pending, body: Reject) -> str:
    checked = check_request(ctx, pending.query)
    if isinstance(checked, Failure):
        if not checked.redirect_uri:
            raise Invalid(checked.description or "the authorization request is not valid")
        return error_location(checked, ctx.settings.issuer)
    failure = Failure(body.error, body.error_description, checked.redirect_uri, checked.state)
    return error_location(failure, ctx.settings.issuer)


def consent_request(
    ctx: AuthContext, challenge: str, pending: Pending, lang: str
) -> ConsentRequest:
    if pending.user_id is None or pending.auth_time is None:
        raise NotFound("no such challenge (it may have been used or have expired)")
    outcome, _ = decide(
        ctx, pending.query, pending.user_id, pending.auth_time, lang, issue=False
    )
    if not (isinstance(outcome, ShowPage) and outcome.template in INTERACTIVE):
        if isinstance(outcome, ShowPage) and outcome.status == 403:
            raise Forbidden("this user may not link this app")
        raise Conflict(
            "this request needs no consent page: send the browser to "
            f"/consent?{urlencode({'consent_challenge': challenge})}"
        )
    user = repository.user(ctx.session, pending.user_id)
    if user is None:
        raise NotFound("no such challenge (it may have been used or have expired)")
    context = outcome.context
    state = "approval_required" if context.get("approval") else (
        "renew" if context.get("renew") else "consent")
    return ConsentRequest(
        challenge=challenge,
        client=client_info(ctx, pending.client_id),
        user=UserInfo(id=str(user.id), email=user.email, name=user.name, template=user.template),
        state=state,
        approval_pending=bool(context.get("pending_request")),
        previously_linked=context["previously_linked"],
        renew=bool(context.get("renew")),
        scopes=[ScopeInfo(**s) for s in context["scopes"]],
        kept_scopes=[ScopeInfo(**s) for s in context["kept_scopes"]],
        dropped_scopes=[ScopeInfo(**s) for s in context["dropped_scopes"]],
        debtors=[DebtorInfo(**d, companies=context["companies"]) for d in context["debtors"]],
        expires_at=context.get("expires_at"),
    )
