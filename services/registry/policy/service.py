"""The environment's app policy (docs/product.md 5.5): apps allowed, needing approval or
blocked (and the state of apps without an entry), the templates that may consent and
those that may request apps, and the consent lifetime (shared/policy/lifetime.py).
Blocking suspends the app's connections in the environment and allowing resumes them;
narrowing the templates suspends the connections of users who may no longer consent; a
new lifetime gives live connections a new expiry at once."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.connections.expiry import apply_lifetime
from services.registry.connections.lifecycle import reconcile
from services.registry.connections.schemas import AppRef
from services.registry.policy.schemas import AppDecision, PolicyOut
from shared.audit import Actor, append_async
from shared.db.types import utcnow
from shared.errors import NotFound
from shared.models import App, AppState, Environment, EnvironmentAppPolicy
from shared.policy import app_by_client_id, consent_templates
from shared.policy.approvals import app_state, request_templates
from shared.policy.dependency import UserCaller


async def read(session: AsyncSession, caller: UserCaller) -> PolicyOut:
    environment = await session.get(Environment, caller.user.environment_id)
    if environment is None:
        raise RuntimeError(f"the environment of user {caller.user.id} is missing")
    stmt = (
        select(EnvironmentAppPolicy, App)
        .join(App, col(App.id) == EnvironmentAppPolicy.app_id)
        .where(EnvironmentAppPolicy.environment_id == environment.id)
        .order_by(col(App.name), col(App.id))
    )
    decisions = [
        AppDecision(app=AppRef(client_id=app.client_id, name=app.name, publisher=app.publisher),
                    state=row.state, blocked=row.blocked, reason=row.reason,
                    changed_by=row.changed_by, updated_at=row.updated_at)
        for row, app in (await session.exec(stmt)).all()
    ]
    return PolicyOut(consent_templates=sorted(consent_templates(environment)),
                     consent_templates_default=environment.consent_templates is None,
                     consent_lifetime_days=environment.consent_lifetime_days,
                     consent_lifetime_days_by_sensitivity=(
                         environment.consent_lifetime_days_by_sensitivity or {}),
                     default_app_state=app_state(None, environment),
                     approval_request_templates=sorted(request_templates(environment)),
                     approval_request_templates_default=(
                         environment.approval_request_templates is None),
                     apps=decisions)


ACTIONS = {AppState.ALLOWED: "policy.app_allowed", AppState.BLOCKED: "policy.app_blocked",
           AppState.APPROVAL_REQUIRED: "policy.app_approval_required"}


async def decide_app(session: AsyncSession, caller: UserCaller, client_id: str, state: AppState,
                     reason: str | None) -> dict[str, int]:
    """Set a third-party app's state in the caller's environment: allowed, approval
    required (new consents need an approved request) or blocked."""
    app = (await session.exec(app_by_client_id(client_id))).first()
    if app is None or app.first_party:
        raise NotFound("no such third-party app")
    environment_id = caller.user.environment_id
    row = await session.get(EnvironmentAppPolicy, (environment_id, app.id))
    if row is None:
        row = EnvironmentAppPolicy(environment_id=environment_id, app_id=app.id)
    changed = row.state != state or row.reason != reason
    row.state, row.reason = state, reason
    row.changed_by, row.updated_at = f"user:{caller.user.id}", utcnow()
    session.add(row)
    await session.flush()
    actor = Actor("user", str(caller.user.id))
    if changed:
        await append_async(session, environment_id, ACTIONS[state], actor, "app", app.id,
                           client_id=app.client_id, state=state.value, reason=reason)
    return await reconcile(session, actor, environment_id=environment_id, app_id=app.id)


async def set_consent_templates(session: AsyncSession, caller: UserCaller,
                                templates: list[str] | None) -> dict[str, int]:
    environment = await session.get(Environment, caller.user.environment_id)
    if environment is None:
        raise RuntimeError(f"the environment of user {caller.user.id} is missing")
    templates = sorted(set(templates)) if templates is not None else None
    actor = Actor("user", str(caller.user.id))
    if environment.consent_templates != templates:
        environment.consent_templates = templates
        environment.updated_at = utcnow()
        session.add(environment)
        await session.flush()
        await append_async(session, environment.id, "policy.consent_templates_changed", actor,
                           "environment", environment.id, consent_templates=templates)
    return await reconcile(session, actor, environment_id=environment.id)


async def set_approvals(session: AsyncSession, caller: UserCaller, default_state: AppState,
                        templates: list[str] | None) -> dict[str, int]:
    """Set the state of apps without an entry and the templates that may request apps;
    connections are suspended or resumed as the new rules say (a default of `blocked`
    suspends the connections of every app without an entry)."""
    environment = await session.get(Environment, caller.user.environment_id,
                                    with_for_update=True)
    if environment is None:
        raise RuntimeError(f"the environment of user {caller.user.id} is missing")
    templates = sorted(set(templates)) if templates is not None else None
    actor = Actor("user", str(caller.user.id))
    if (environment.default_app_state != default_state
            or environment.approval_request_templates != templates):
        environment.default_app_state = default_state.value
        environment.approval_request_templates = templates
        environment.updated_at = utcnow()
        session.add(environment)
        await session.flush()
        await append_async(session, environment.id, "policy.approvals_changed", actor,
                           "environment", environment.id, default_app_state=default_state.value,
                           approval_request_templates=templates)
    return await reconcile(session, actor, environment_id=environment.id)


async def set_consent_lifetime(session: AsyncSession, caller: UserCaller, days: int | None,
                               by_sensitivity: dict[str, int] | None) -> int:
    """Set the environment's consent lifetime; it applies to live connections from now
    (never sooner than 14 days from now). Returns how many connections changed."""
    # FOR NO KEY UPDATE: one change at a time, while a user's write to a connection
    # (which locks the row, then refers to the environment in its audit event) goes on
    # instead of deadlocking with apply_lifetime's row locks.
    environment = await session.get(Environment, caller.user.environment_id,
                                    with_for_update={"key_share": True})
    if environment is None:
        raise RuntimeError(f"the environment of user {caller.user.id} is missing")
    by_sensitivity = by_sensitivity or None
    if (environment.consent_lifetime_days == days
            and (environment.consent_lifetime_days_by_sensitivity or None) == by_sensitivity):
        return 0
    now = utcnow()
    environment.consent_lifetime_days = days
    environment.consent_lifetime_days_by_sensitivity = by_sensitivity
    environment.updated_at = now
    session.add(environment)
    await session.flush()
    updated = await apply_lifetime(session, environment, now)
    await append_async(session, environment.id, "policy.consent_lifetime_changed",
                       Actor("user", str(caller.user.id)), "environment", environment.id,
                       consent_lifetime_days=days,
                       consent_lifetime_days_by_sensitivity=by_sensitivity,
                       connections_updated=updated)
    return updated
