"""Resolve a verified token into a `Caller` and ask the declared rules about it.

    caller = await resolve(session, principal, with_reach=True)
    authorize(caller, RULES["employees.read"])   # 403 if not allowed

The caller's kind and reach come from the database as it is now (the user's template and
companies, the connection's status, scopes and companies, the app's kind), never from a
claim or anything else the request supplies.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db.types import utcnow
from shared.errors import Forbidden, InsufficientScope
from shared.models import App, Connection, ConnectionCompany, Employee, User, is_live
from shared.policy.apps import is_platform
from shared.policy.callers import CallerKind, user_kind
from shared.policy.reach import NOBODY, Caller, user_company_ids
from shared.policy.rules import Rule
from shared.scopes import granting_scope, implied
from shared.tokens import InvalidToken, Principal


def app_by_client_id(client_id: str):
    """The query for the app with this client id (the one lookup every service uses)."""
    return select(App).where(App.client_id == client_id)


def app_kind(app: App) -> CallerKind:
    """The kind of an app calling for itself (client credentials): a partner's app, a
    first-party app bound to one environment, or the platform's own (shared/policy/apps.py)."""
    if not app.first_party:
        return CallerKind.PARTNER_APP
    return CallerKind.PLATFORM_APP if is_platform(app) else CallerKind.FIRST_PARTY_APP


async def _ids(session: AsyncSession, stmt) -> frozenset[uuid.UUID]:
    return frozenset((await session.exec(stmt)).all())


async def _connection_caller(session: AsyncSession, principal: Principal) -> Caller:
    # The row is read on every call anyway, so its expiry is checked here: the status
    # cache (shared/status.py) says only whether the status is active.
    connection = await session.get(Connection, principal.connection_id)
    app = (await session.exec(app_by_client_id(principal.client_id))).first()
    if (connection is None or app is None or connection.app_id != app.id
            or not is_live(connection.status, connection.expires_at, utcnow())
            or connection.environment_id != principal.environment_id
            or connection.debtor_id != principal.debtor_id):
        raise InvalidToken("the access token's connection is not active")
    companies = await _ids(session, select(ConnectionCompany.company_id).where(
        ConnectionCompany.connection_id == connection.id))
    return Caller(principal, CallerKind.CONNECTION, connection.environment_id,
                  frozenset({connection.debtor_id}), companies, connection_id=connection.id,
                  granted=frozenset(connection.scopes), app=app)


async def _user_caller(session: AsyncSession, principal: Principal, with_reach: bool
                       ) -> Caller:
    user = await session.get(User, principal.user_id)
    if user is None or not user.active or user.environment_id != principal.environment_id:
        raise InvalidToken("the access token's user is unknown or inactive")
    kind = user_kind(user.template)
    environment_id = user.environment_id
    if not with_reach or kind == CallerKind.ACCOUNTANT:
        return Caller(principal, kind, environment_id, user=user)
    if kind == CallerKind.EMPLOYEE:
        employee = await session.get(Employee, user.employee_id) if user.employee_id else None
        if employee is None or employee.environment_id != environment_id:
            return Caller(principal, kind, environment_id, frozenset(), frozenset(),
                          employee_id=NOBODY, user=user)
        return Caller(principal, kind, environment_id, frozenset({employee.debtor_id}),
                      frozenset({employee.company_id}), employee_id=employee.id, user=user)
    debtors = frozenset({user.debtor_id}) if user.debtor_id else frozenset()
    companies = user_company_ids(user)
    company_ids = None if kind == CallerKind.MASTER_CLIENT or companies is None \
        else await _ids(session, companies)
    return Caller(principal, kind, environment_id, debtors, company_ids, user=user)


async def _app_caller(session: AsyncSession, principal: Principal) -> Caller:
    app = (await session.exec(app_by_client_id(principal.client_id))).first()
    if app is None:
        raise InvalidToken("the access token's app is unknown")
    kind = app_kind(app)
    # The platform's app reaches every environment; a bound app its own; a partner app
    # and a first-party app placed nowhere (suspended until an operator places it) none:
    # a partner's own objects are matched by its app id, never by reach.
    environment_id: uuid.UUID | None = NOBODY
    if kind == CallerKind.PLATFORM_APP:
        environment_id = None
    elif kind == CallerKind.FIRST_PARTY_APP and app.environment_id is not None:
        environment_id = app.environment_id
    return Caller(principal, kind, environment_id, app=app)


async def resolve(session: AsyncSession, principal: Principal, *, with_reach: bool = True
                  ) -> Caller:
    """The caller behind a verified token; `with_reach` also loads the companies a user
    reaches (the data API needs them, the registry does not)."""
    if principal.kind == "connection":
        return await _connection_caller(session, principal)
    if principal.kind == "user":
        return await _user_caller(session, principal, with_reach)
    return await _app_caller(session, principal)


def authorize(caller: Caller, rule: Rule) -> Caller:
    """`caller` bound to `rule` if the rule allows it; 403 otherwise (naming the missing
    scope, or saying who may). Whether an object lies within reach is the caller of
    `Caller.reaches` / `conditions`' business (404)."""
    if not rule.allows(caller.kind):
        raise Forbidden(f"a {caller.kind.value.replace('_', ' ')} token may not perform "
                        f"{rule.operation}")
    if rule.scopes and not any(caller.has_scope(scope) for scope in rule.scopes):
        raise InsufficientScope(" ".join(rule.scopes))
    return replace(caller, rule=rule)


def consented_scope(caller: Caller, rule: Rule) -> str | None:
    """For a connection's call that `authorize` let through: the consented scope that
    satisfied the rule (the first of the rule's scopes the caller has, as the connection
    granted it: itself, or the write scope that implies it); None for other callers or a
    rule without scopes. What Manage apps shows as the scope's last use."""
    if caller.kind != CallerKind.CONNECTION or caller.granted is None:
        return None
    for needed in rule.scopes:
        if caller.has_scope(needed):
            return granting_scope(caller.granted & implied(caller.principal.scopes), needed)
    return None


def refuse_values(caller: Caller, values: dict) -> None:
    """403 if the caller's rule does not let it write these field values."""
    if not caller.may_set(values):
        raise Forbidden(f"a {caller.kind.value.replace('_', ' ')} token may not set "
                        + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))



