"""Consent (docs/product.md 5.2): who may link and what a link covers, as the policy
(shared/policy) says, and the connection it creates or widens.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.auth.consent import repository
from services.auth.oauth2.context import AuthContext
from services.auth.oauth2.grant_management import GrantRequest
from services.auth.oauth2.issue import revoke_family
from shared import policy, receipts
from shared.audit import Actor, append
from shared.models import (
    AppState,
    Company,
    Connection,
    ConnectionStatus,
    Debtor,
    User,
    is_expired,
)
from shared.outbox import connection_event, emit
from shared.policy import approvals
from shared.policy.lifetime import after_widening
from shared.receipts import Act, Method
from shared.scopes import CONSENT_SCOPES, implied
from shared.status import Subject
from shared.unit_of_work import unit_of_work


class ConsentRefused(Exception):
    """The consent cannot be given; `code` says why (for the page and the app)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code
        self.detail = detail


def consent_templates(ctx: AuthContext, environment_id: uuid.UUID) -> list[str]:
    """The templates that may link third-party apps in the environment (the policy's)."""
    return policy.consent_templates(repository.environment(ctx.session, environment_id))


def app_state(ctx: AuthContext, environment_id: uuid.UUID, app_id: uuid.UUID) -> AppState:
    """The app's state in the environment's policy (its entry, else the default)."""
    row = repository.app_policy(ctx.session, environment_id, app_id)
    return approvals.app_state(row.state if row is not None else None,
                               repository.environment(ctx.session, environment_id))


def may_consent_to(ctx: AuthContext, user: User, state: AppState) -> bool:
    """Whether `user` may link an app in this state themselves now (the policy's)."""
    return approvals.may_consent_to(
        user, repository.environment(ctx.session, user.environment_id), state)


def may_request(ctx: AuthContext, user: User, state: AppState) -> bool:
    """Whether `user` may ask for approval of an app in this state (the policy's)."""
    return approvals.may_request(
        user, repository.environment(ctx.session, user.environment_id), state)


def may_link(ctx: AuthContext, environment_id: uuid.UUID, app_id: uuid.UUID) -> bool:
    """Whether the app may be linked in the environment at all (the policy's: a
    partner's sandbox admits only that partner's apps)."""
    return policy.may_link(repository.app_partner_id(ctx.session, app_id),
                           repository.environment(ctx.session, environment_id))


def may_consent(ctx: AuthContext, user: User) -> bool:
    """Whether `user` may link a third-party app now (the policy's consent gate)."""
    return policy.may_consent(user, repository.environment(ctx.session, user.environment_id))


@dataclass
class Reach:
    """The debtors a user may link for, each with the companies a link would cover."""

    debtors: list[Debtor]
    companies: dict[uuid.UUID, list[Company]]


def reach(ctx: AuthContext, user: User) -> Reach:
    """What a link by `user` can cover: never more than the user's own reach."""
    if user.debtor_id is None:
        return Reach([], {})
    debtor = repository.debtor(ctx.session, user.debtor_id)
    if debtor is None or debtor.environment_id != user.environment_id:
        return Reach([], {})
    return Reach([debtor], {debtor.id: repository.user_companies(ctx.session, user)})


def live_connection(
    ctx: AuthContext, user_id: uuid.UUID, app_id: uuid.UUID, debtor_id: uuid.UUID,
    *, for_update: bool = False,
) -> Connection | None:
    """The user's connection to the app for the debtor, unless it was revoked (locked
    with `for_update`)."""
    return repository.live_connection(ctx.session, user_id, app_id, debtor_id,
                                      for_update=for_update)


def new_scopes(connection: Connection | None, requested: list[str]) -> list[str]:
    """The requested consent scopes that the connection does not grant yet."""
    granted = implied(connection.scopes) if connection else set()
    return [s for s in requested if s in CONSENT_SCOPES and s not in granted]


def dropped_scopes(connection: Connection | None, requested: list[str], replace: bool
                   ) -> list[str]:
    """The granted scopes a `replace` takes away (a requested write scope keeps its read
    scope); nothing for any other request."""
    if connection is None or not replace:
        return []
    keep = implied(s for s in requested if s in CONSENT_SCOPES)
    return [s for s in connection.scopes if s not in keep]


def grant(
    ctx: AuthContext,
    user: User,
    app_id: uuid.UUID,
    debtor_id: uuid.UUID,
    company_ids: list[uuid.UUID],
    scopes: list[str],
    grant_request: GrantRequest | None = None,
    *,
    lang: str = "en",
    method: Method = Method.CONSENT_PAGE,
) -> tuple[Connection, bool]:
    """Create the connection, or widen the live one (replace its scopes, for a Grant
    Management `replace`); returns it and whether it is new. `lang` and `method`: the
    language the consent was shown in and how it was collected (its receipt's)."""
    asked = grant_request or GrantRequest()
    if not may_consent(ctx, user):
        raise ConsentRefused("not_allowed")
    if not may_link(ctx, user.environment_id, app_id):
        raise ConsentRefused("app_not_admitted", "this sandbox admits only its partner's apps")
    state = app_state(ctx, user.environment_id, app_id)
    if state == AppState.BLOCKED:
        raise ConsentRefused("app_blocked", "your environment has blocked this app")
    if not may_consent_to(ctx, user, state):
        raise ConsentRefused("approval_required", "this app needs an approval first")
    allowed = reach(ctx, user)
    if debtor_id not in allowed.companies:
        raise ConsentRefused("invalid_debtor", "that client is not in your reach")
    reachable = {c.id for c in allowed.companies[debtor_id]}
    chosen = set(company_ids)
    if not chosen or not chosen <= reachable:
        raise ConsentRefused("invalid_companies", "choose companies within your reach")
    # Locked: a second consent on it at the same time compares with what the first wrote.
    connection = live_connection(ctx, user.id, app_id, debtor_id, for_update=True)
    if asked.grant_id is not None and (connection is None or connection.id != asked.grant_id):
        raise ConsentRefused("invalid_grant_id", "this grant is not live for you and this app")
    created = False
    if connection is None:  # or the one another consent makes at the same time
        connection, created = repository.claim_connection(
            ctx.session, user.environment_id, user.id, app_id, debtor_id)
    if not created and is_expired(connection.status, connection.expires_at, ctx.now):
        # Only a confirmed renewal (renew.py) makes it active again, with a new expiry.
        raise ConsentRefused("expired", "this link has expired; renew it first")
    if not created and connection.status != ConnectionStatus.ACTIVE:
        raise ConsentRefused("suspended", "this link is suspended")
    consent = [s for s in scopes if s in CONSENT_SCOPES]
    before = list(connection.scopes)
    after = list(dict.fromkeys(consent if asked.replace else [*before, *consent]))
    added = [s for s in after if s not in before]
    # What the page said goes (a requested write scope keeps its read scope): only that
    # ends the tokens issued before.
    removed = dropped_scopes(connection, scopes, asked.replace)
    # The companies chosen now are the consent's, exactly: a change is a consent act too.
    had = chosen if created else repository.company_ids(ctx.session, connection.id)
    reach_change = CompanyChange(sorted(chosen - had), sorted(had - chosen))
    connection.scopes = after
    connection.updated_at = ctx.now
    if created or added:  # the environment's consent lifetime (shared/policy/lifetime.py)
        connection.expires_at = after_widening(
            repository.environment(ctx.session, user.environment_id), connection.scopes,
            None if created else connection.expires_at, ctx.now)
    repository.save_connection(ctx.session, connection, sorted(chosen))
    unit_of_work(ctx.session).publish_status(Subject.CONNECTION, connection.id, True)
    families = _narrowed(ctx, connection) if removed else []
    _record(ctx, user, connection, created, added, sorted(chosen),
            removed=removed, families=len(families), reach_change=reach_change)
    act = consent_act(created, added, removed, reach_change)
    if act is not None:
        receipts.issue(ctx.session, connection, act, f"user:{user.id}", method=method,
                       lang=lang, issuer=ctx.settings.issuer, keys=ctx.keyring)
    return connection, created


@dataclass(frozen=True)
class CompanyChange:
    """How a consent on a live connection changed the companies it names."""

    added: list[uuid.UUID]
    removed: list[uuid.UUID]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


def consent_act(created: bool, added: list[str], removed: list[str],
                reach_change: CompanyChange
                ) -> Act | None:
    """The receipt's act of a consent, None when it changed nothing: new, wider (scopes,
    then companies), or narrower."""
    if created:
        return Act.GRANTED
    if added:
        return Act.SCOPES_ADDED
    if reach_change.added:
        return Act.COMPANIES_ADDED
    if removed or reach_change.removed:
        return Act.NARROWED
    return None


def _narrowed(ctx: AuthContext, connection: Connection) -> list[uuid.UUID]:
    """A `replace` took scopes away: the tokens issued before it carry them, so their
    families end (the draft's section 10; the code of this consent gets a new one)."""
    families = repository.live_family_ids(ctx.session, connection.id)
    for family_id in families:
        revoke_family(ctx, family_id)
    return families


def _record(
    ctx: AuthContext,
    user: User,
    connection: Connection,
    created: bool,
    added: list[str],
    company_ids: list[uuid.UUID],
    *,
    removed: list[str],
    families: int,
    reach_change: CompanyChange,
) -> None:
    """The audit event and the outbox event of a consent."""
    if not created and not added and not removed and not reach_change:
        return
    companies = [str(c) for c in company_ids]
    action = "consent.granted" if created else "consent.scopes_added"
    extra: dict[str, object] = {}
    if removed:
        action, extra = "consent.scopes_replaced", {"removed": removed,
                                                     "token_families": families}
    elif not created and not added:
        action = "consent.companies_changed"
    if reach_change:
        extra.update(companies_added=[str(c) for c in reach_change.added],
                     companies_removed=[str(c) for c in reach_change.removed])
    append(
        ctx.session,
        user.environment_id,
        action,
        Actor("user", str(user.id)),
        "connection",
        connection.id,
        app_id=str(connection.app_id),
        debtor_id=str(connection.debtor_id),
        scopes=connection.scopes,
        added=added,
        company_ids=companies,
        **extra,
    )
    changed = ["scopes", "company_ids"] if created else (
        (["scopes"] if added or removed else []) + (["company_ids"] if reach_change else []))
    emit(
        ctx.session,
        **connection_event(
            "connection.created" if created else "connection.updated",
            connection,
            changed_fields=changed,
        ),
    )
