"""What happens once the user is known: answer the app at once, or ask for consent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.auth.consent import approval, renew, repository
from services.auth.consent.service import (
    ConsentRefused,
    app_state,
    consent_templates,
    dropped_scopes,
    grant,
    live_connection,
    may_consent,
    may_consent_to,
    may_link,
    may_request,
    new_scopes,
    reach,
)
from services.auth.oauth2.authorization import (
    Checked,
    Failure,
    check_request,
    error_location,
    issue_code,
)
from services.auth.oauth2.context import AuthContext
from services.auth.oauth2.grant_management import INVALID_GRANT_ID
from services.auth.pages.i18n import TEMPLATE_NAMES
from shared.models import AppState, Connection, ConnectionStatus, User, is_expired
from shared.policy.apps import admits_user
from shared.policy.lifetime import after_widening, expires_at
from shared.receipts import Method
from shared.scopes import CONSENT_SCOPES, SCOPES, implied

# Pages that wait for the person's answer (the authorization request stays pending).
INTERACTIVE = ("consent.html", "approval.html")


@dataclass
class Redirect:
    location: str


@dataclass
class ShowPage:
    template: str
    status: int = 200
    context: dict = field(default_factory=dict)


@dataclass
class NeedLogin:
    """The session's user can no longer sign in: log in again."""


Outcome = Redirect | ShowPage | NeedLogin


def error_page(
    failure: Failure, issuer: str, lang: str, title_key: str = "error_title"
) -> ShowPage:
    return ShowPage(
        "message.html",
        400,
        {
            "title_key": title_key,
            "detail": failure.description,
            "error_code": failure.error,
            "return_url": error_location(failure, issuer) if failure.redirect_uri else None,
        },
    )


def refuse(checked: Checked, error: str, description: str, issuer: str) -> Redirect:
    failure = Failure(error, description, checked.redirect_uri, checked.state)
    return Redirect(error_location(failure, issuer))


def decide(
    ctx: AuthContext,
    query: list[tuple[str, str]],
    user_id: str,
    auth_time: float,
    lang: str,
    *,
    issue: bool = True,
) -> tuple[Outcome, Checked | None]:
    """Validate the stored request again and decide the next step for this user.

    With `issue=False` an answer that would carry a code comes back as `Redirect("")`
    and no code is issued (for callers that only look). With `prompt=none` the user is
    never shown anything: what would be a page becomes an error for the app.
    """
    outcome, checked = _decide(ctx, query, user_id, auth_time, lang, issue=issue)
    if checked is None or "none" not in checked.prompt or isinstance(outcome, Redirect):
        return outcome, checked
    issuer = ctx.settings.issuer
    if isinstance(outcome, NeedLogin):
        return refuse(checked, "login_required", "the user has to log in", issuer), checked
    return refuse(checked, "access_denied", "this login may not link this app", issuer), checked


def _decide(
    ctx: AuthContext,
    query: list[tuple[str, str]],
    user_id: str,
    auth_time: float,
    lang: str,
    *,
    issue: bool,
) -> tuple[Outcome, Checked | None]:
    issuer = ctx.settings.issuer
    checked = check_request(ctx, query)
    if isinstance(checked, Failure):
        if checked.redirect_uri:
            return Redirect(error_location(checked, issuer)), None
        return error_page(checked, issuer, lang), None
    if not checked.active:
        return refuse(checked, "access_denied", "this app is suspended", issuer), checked
    user = repository.user(ctx.session, user_id)
    if user is None or not user.active or not admits_user(checked, user.environment_id):
        # A session of another environment's user does not sign in to a bound app.
        return NeedLogin(), checked
    when = datetime.fromtimestamp(auth_time, UTC)

    def answer(connection):
        scopes = granted_scopes(ctx, checked, connection)
        return Redirect(issue_code(ctx, query, user, connection, when, scopes) if issue else "")

    if checked.first_party:
        return answer(None), checked
    if not may_link(ctx, user.environment_id, uuid.UUID(checked.app_id)):
        return refuse(
            checked, "access_denied", "this sandbox admits only its partner's apps", issuer
        ), checked
    state = app_state(ctx, user.environment_id, uuid.UUID(checked.app_id))
    if state == AppState.BLOCKED:
        return refuse(
            checked, "access_denied", "this app is blocked by the environment's policy", issuer
        ), checked
    # The user links the app itself, or (docs/product.md, "Approval requests") asks for
    # an approval; an approved connection then answers like any remembered consent.
    direct = may_consent_to(ctx, user, state)
    if not direct and not may_request(ctx, user, state):
        names = TEMPLATE_NAMES[lang]
        allowed = ", ".join(names[t] for t in consent_templates(ctx, user.environment_id))
        failure = Failure(
            "access_denied", "this login may not link apps", checked.redirect_uri, checked.state
        )
        line = ("not_allowed", {"template": names[user.template], "allowed": allowed})
        if may_consent(ctx, user):  # its template may consent, but this app needs approval
            line = ("approval_not_allowed", {"template": names[user.template],
                                             "app": checked.app["name"]})
        return ShowPage(
            "message.html",
            403,
            {
                "title_key": "not_allowed_title",
                "lines": [line],
                "return_url": error_location(failure, issuer),
            },
        ), checked
    scope_of = reach(ctx, user)
    if not scope_of.debtors or not any(scope_of.companies.values()):
        failure = Failure(
            "access_denied", "the user reaches no companies", checked.redirect_uri, checked.state
        )
        return ShowPage(
            "message.html",
            403,
            {
                "title_key": "not_allowed_title",
                "lines": [("no_companies", {})],
                "return_url": error_location(failure, issuer),
            },
        ), checked
    debtor = scope_of.debtors[0]
    connection = live_connection(ctx, user.id, uuid.UUID(checked.app_id), debtor.id)
    asked = checked.grant
    if asked.grant_id is not None and (connection is None or connection.id != asked.grant_id):
        # Unknown, revoked, another app's or another user's: one answer for all (the
        # Grant Management draft's invalid_grant_id), so an id tells nothing about others.
        return refuse(checked, INVALID_GRANT_ID, "unknown grant_id", issuer), checked
    if connection is not None and is_expired(connection.status, connection.expires_at, ctx.now):
        # Only a person renews: never remembered consent, never prompt=none.
        if "none" in checked.prompt:
            return refuse(checked, "consent_required",
                          "the link has expired; the user has to renew it", issuer), checked
        if not direct:  # renewing is consenting again: it needs an approval too
            return ShowPage("approval.html", 200, approval.page_context(
                ctx, checked, user, connection, scope_of, lang)), checked
        return ShowPage("consent.html", 200, {
            "app": checked.app, **renew.page_context(ctx, connection, lang),
            **page_facts(ctx, user, connection.scopes, None, renewal=True)}), checked
    if connection is not None and connection.status != ConnectionStatus.ACTIVE:
        return refuse(checked, "access_denied", "this link is suspended", issuer), checked
    to_ask = new_scopes(connection, checked.scopes)
    dropped = dropped_scopes(connection, checked.scopes, asked.replace)
    if connection is not None and not to_ask and not dropped and "consent" not in checked.prompt:
        return answer(connection), checked
    if "none" in checked.prompt:
        return refuse(checked, "consent_required", "the user has to consent", issuer), checked
    if not direct:
        return ShowPage("approval.html", 200, approval.page_context(
            ctx, checked, user, connection, scope_of, lang)), checked
    shown = to_ask or [s for s in checked.scopes if s in SCOPES]
    # The page shows the whole resulting grant: what is asked now, what stays granted,
    # and (for a replace) what goes.
    kept = [s for s in resulting_scopes(checked, connection) if s not in shown]
    return ShowPage(
        "consent.html",
        200,
        {
            "app": checked.app,
            "previously_linked": connection is not None and bool(to_ask),
            # Whether allowing changes the grant (or makes one): else only prompt=consent
            # asked for the page.
            "changes_grant": connection is None or bool(to_ask or dropped),
            "scopes": [SCOPES[s].localized(lang) for s in shown],
            "kept_scopes": [SCOPES[s].localized(lang) for s in kept if s in SCOPES],
            "dropped_scopes": [SCOPES[s].localized(lang) for s in dropped if s in SCOPES],
            "debtors": [{"id": str(d.id), "name": d.name} for d in scope_of.debtors],
            "companies": [{"id": str(c.id), "name": c.name} for c in scope_of.companies[debtor.id]],
            **page_facts(ctx, user, resulting_scopes(checked, connection), connection),
        },
    ), checked


def page_facts(ctx: AuthContext, user: User, scopes: list[str], connection: Connection | None,
               *, renewal: bool = False) -> dict:
    """What else a person needs to decide (docs/product.md, "The consent page"): who is
    logged in, whether this is a partner's sandbox, and until when the consent lasts:
    the environment's consent lifetime for these scopes (shared/policy/lifetime.py) from
    now, or for a widened connection the expiry it keeps; None: until the user revokes
    it."""
    environment = repository.environment(ctx.session, user.environment_id)
    if renewal or connection is None:
        until = expires_at(environment, scopes, ctx.now)
    else:
        until = after_widening(environment, scopes, connection.expires_at, ctx.now)
    return {
        "user": {"name": user.name, "email": user.email},
        "expires_at": until,
        "lifetime_days": None if until is None else (until.date() - ctx.now.date()).days,
        # A partner's sandbox says so on every page that shows its data.
        "sandbox": environment is not None and environment.sandbox,
    }


def resulting_scopes(checked: Checked, connection: Connection | None) -> list[str]:
    """The consent scopes the connection holds once this request is granted: the
    requested ones for a `replace`, else the granted ones and the requested ones."""
    requested = [s for s in checked.scopes if s in CONSENT_SCOPES]
    if connection is None or checked.grant.replace:
        return requested
    return list(dict.fromkeys([*connection.scopes, *requested]))


def granted_scopes(ctx: AuthContext, checked: Checked, connection: Connection | None
                   ) -> list[str] | None:
    """The scopes of the code: for a Grant Management `merge` or `create` the whole
    grant (its tokens carry the union), for a `replace` the new set, in each case only
    what the app is still registered for (a registration narrowed since the grant must
    not come back through it); None (the requested scopes, as before) without a grant
    management action."""
    if connection is None or checked.grant.action is None:
        return None
    registered = implied(checked.registered_scopes)
    return [scope for scope in connection.scopes if scope in registered]


def _parse_ids(values: list[str]) -> list[uuid.UUID] | None:
    try:
        return [uuid.UUID(v) for v in values]
    except ValueError:
        return None


def record_decision(
    ctx: AuthContext, pending, allow: bool, debtor_id: str, company_ids: list[str], lang: str,
    method: Method = Method.CONSENT_PAGE,
) -> Outcome:
    """Record allow or deny for a pending request; returns where the browser goes next.
    `method`: the consent page, or a frontend's screens through the challenge API."""
    checked = check_request(ctx, pending.query)
    issuer = ctx.settings.issuer
    if isinstance(checked, Failure):
        if checked.redirect_uri:
            return Redirect(error_location(checked, issuer))
        return error_page(checked, issuer, lang)
    if not allow:
        failure = Failure(
            "access_denied", "the user denied the request", checked.redirect_uri, checked.state
        )
        return Redirect(error_location(failure, issuer))
    # The scopes come from the stored request, never from the form.
    outcome, _ = decide(ctx, pending.query, pending.user_id, pending.auth_time, lang)
    if not (isinstance(outcome, ShowPage) and outcome.template == "consent.html"):
        return outcome
    if outcome.context.get("renew"):
        return _renew(ctx, pending, outcome.context["renew_connection_id"], lang, method)
    debtor = _parse_ids([debtor_id])
    companies = _parse_ids(company_ids)
    if not debtor or companies is None:
        return ShowPage(
            "message.html", 400, {"title_key": "error_title", "lines": [("error_intro", {})]}
        )
    user = repository.user(ctx.session, pending.user_id)
    if user is None:
        return NeedLogin()
    try:
        connection, _ = grant(
            ctx, user, uuid.UUID(checked.app_id), debtor[0], companies, checked.scopes,
            checked.grant, lang=lang, method=method,
        )
    except ConsentRefused as exc:
        return ShowPage(
            "message.html",
            400,
            {"title_key": "error_title", "detail": exc.detail, "error_code": exc.code},
        )
    when = datetime.fromtimestamp(pending.auth_time, UTC)
    scopes = granted_scopes(ctx, checked, connection)
    return Redirect(issue_code(ctx, pending.query, user, connection, when, scopes))


def record_approval_request(ctx: AuthContext, pending, justification: str, lang: str
                            ) -> Outcome:
    """The user asked for approval on the approval page: record the consent request and
    send the browser back to the app (access_denied, approval pending). The request is
    decided again first: whatever no longer needs an approval goes on as usual."""
    outcome, checked = decide(ctx, pending.query, pending.user_id, pending.auth_time, lang)
    if (checked is None or not isinstance(outcome, ShowPage)
            or outcome.template != "approval.html"):
        return outcome
    text = approval.clean_justification(justification)
    if text is None:
        outcome.status = 400
        outcome.context["justification_missing"] = True
        return outcome
    user = repository.user(ctx.session, pending.user_id)
    if user is None:
        return NeedLogin()
    return Redirect(approval.record(ctx, checked, user, outcome.context, text))


def _renew(ctx: AuthContext, pending, connection_id: str, lang: str, method: Method
           ) -> Outcome:
    """The user confirmed a renewal (same scopes and companies); then on as usual: a code
    of the whole grant, or the consent page when the request changes the grant (new
    scopes, or scopes a `replace` drops); its allow goes through grant()."""
    user = repository.user(ctx.session, pending.user_id)
    if user is None:
        return NeedLogin()
    try:
        connection = renew.renew(ctx, user, connection_id, lang, method)
    except ConsentRefused as exc:
        return ShowPage(
            "message.html",
            400,
            {"title_key": "error_title", "detail": exc.detail, "error_code": exc.code},
        )
    outcome, checked = decide(ctx, pending.query, pending.user_id, pending.auth_time, lang)
    if (isinstance(outcome, ShowPage) and outcome.template == "consent.html"
            and checked is not None and not outcome.context.get("renew")
            and not outcome.context.get("changes_grant")):
        # Nothing to change (the page came only from prompt=consent): just confirmed.
        when = datetime.fromtimestamp(pending.auth_time, UTC)
        scopes = granted_scopes(ctx, checked, connection)
        return Redirect(issue_code(ctx, pending.query, user, connection, when, scopes))
    return outcome
