"""Suspension and resumption (docs/product.md section 3): a connection works only while
its user is active and may consent in the environment (or, for an approved connection,
may still request), and its app is active and not blocked there (the reasons are the
policy's: shared/policy/approvals.py). Whoever changes one of those causes calls
`reconcile` in the same transaction; revoked connections are never touched (revoked is
final). A suspension outranks an expiry, and a resumed connection whose consent lifetime
ran out meanwhile becomes `expired` (expiry.py).
"""

from __future__ import annotations

import uuid

from sqlalchemy import and_
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.connections.expiry import expire
from services.registry.connections.service import revoke
from shared import receipts
from shared.audit import Actor, append_async
from shared.db.types import utcnow
from shared.models import (
    App,
    Connection,
    ConnectionCompany,
    ConnectionStatus,
    Environment,
    EnvironmentAppPolicy,
    User,
)
from shared.outbox import connection_event, emit
from shared.policy import suspension_reason, user_company_ids
from shared.policy.approvals import app_state
from shared.policy.consent import CONSENT_CAPABLE
from shared.receipts import Act
from shared.status import Subject
from shared.unit_of_work import unit_of_work

BATCH = 500


async def reconcile(session: AsyncSession, actor: Actor, *,
                    environment_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None,
                    app_id: uuid.UUID | None = None) -> dict[str, int]:
    """Suspend or resume the selected live connections as the rules say; returns how
    many were suspended, resumed and (resumed past their expiry) expired. Each change
    is audited, evented and published."""
    counts = {"suspended": 0, "resumed": 0, "expired": 0}
    stmt = (
        # sqlmodel's select() is typed for up to four columns.
        select(Connection, User, App, Environment, EnvironmentAppPolicy.state)  # type: ignore[call-overload]
        .join(User, col(User.id) == Connection.user_id)
        .join(App, col(App.id) == Connection.app_id)
        .join(Environment, col(Environment.id) == Connection.environment_id)
        .outerjoin(EnvironmentAppPolicy, and_(
            col(EnvironmentAppPolicy.environment_id) == Connection.environment_id,
            col(EnvironmentAppPolicy.app_id) == Connection.app_id))
        .where(col(Connection.status) != ConnectionStatus.REVOKED)
    )
    for name, value in (("environment_id", environment_id), ("user_id", user_id),
                        ("app_id", app_id)):
        if value is not None:
            stmt = stmt.where(getattr(Connection, name) == value)
    after = None
    while True:
        page = stmt if after is None else stmt.where(col(Connection.id) > after)
        rows = (await session.exec(page.order_by(col(Connection.id)).limit(BATCH))).all()
        if not rows:
            return counts
        for connection, user, app, environment, entry in rows:
            reason = suspension_reason(user, app, environment, app_state(entry, environment),
                                       connection.approved_by is not None)
            changed = await _apply(session, connection, reason, actor)
            if changed:
                counts[changed] += 1
        after = rows[-1][0].id


async def _apply(session: AsyncSession, connection: Connection, reason: str | None,
                 actor: Actor) -> str | None:
    """Revoked over suspended over expired: a connection with a reason is suspended
    (an expired one too); one without is resumed, unless its time passed meanwhile,
    when it becomes `expired` (expiry.py) instead of active."""
    if reason is None and connection.status == ConnectionStatus.SUSPENDED:
        now = utcnow()
        if connection.expires_at is not None and connection.expires_at <= now:
            await expire(session, connection, actor, now)
            return "expired"
        status, change = ConnectionStatus.ACTIVE, "resumed"
    elif reason is not None and connection.status in (ConnectionStatus.ACTIVE,
                                                      ConnectionStatus.EXPIRED):
        status, change = ConnectionStatus.SUSPENDED, "suspended"
    else:
        if reason is not None and reason != connection.suspended_reason:
            connection.suspended_reason = reason  # still suspended, for another cause
            session.add(connection)
        return None
    connection.status = status
    connection.suspended_reason = reason
    connection.updated_at = utcnow()
    session.add(connection)
    action = f"connection.{change}"
    await append_async(session, connection.environment_id, action, actor, "connection",
                       connection.id, app_id=str(connection.app_id),
                       user_id=str(connection.user_id), reason=reason)
    emit(session, **connection_event(action, connection, changed_fields=["status"]))
    unit_of_work(session).publish_status(Subject.CONNECTION, connection.id,
                                         status == ConnectionStatus.ACTIVE)
    await session.flush()
    return change


async def user_reach(session: AsyncSession, user: User) -> set[uuid.UUID]:
    """The companies a connection of `user` may cover now (the policy's user companies;
    none for an accountant, who consents for no debtor)."""
    stmt = user_company_ids(user) if user.debtor_id is not None else None
    return set((await session.exec(stmt)).all()) if stmt is not None else set()


async def narrow_to_reach(session: AsyncSession, user: User, actor: Actor) -> int:
    """Keep the user's live connections within the user's reach: companies the user no
    longer reaches are dropped (`connection.updated`); a connection left with none is
    revoked. Returns how many connections changed."""
    if user.template not in CONSENT_CAPABLE:
        return 0  # its connections are suspended; they are narrowed once it may consent
    reach = await user_reach(session, user)
    stmt = select(Connection).where(Connection.user_id == user.id,
                                    col(Connection.status) != ConnectionStatus.REVOKED)
    changed = 0
    for connection in (await session.exec(stmt)).all():
        covered = set((await session.exec(select(ConnectionCompany.company_id).where(
            ConnectionCompany.connection_id == connection.id))).all())
        keep = covered & reach if connection.debtor_id == user.debtor_id else set()
        if keep == covered:
            continue
        changed += 1
        if not keep:
            await revoke(session, connection, actor, "system:reach",
                         "the user no longer reaches any company of this connection")
            continue
        await session.exec(delete(ConnectionCompany).where(
            col(ConnectionCompany.connection_id) == connection.id,
            col(ConnectionCompany.company_id).in_(list(covered - keep))))
        connection.updated_at = utcnow()
        session.add(connection)
        await append_async(session, connection.environment_id, "connection.narrowed", actor,
                           "connection", connection.id,
                           removed_company_ids=sorted(str(c) for c in covered - keep))
        emit(session, **connection_event("connection.updated", connection,
                                          changed_fields=["company_ids"]))
        await receipts.issue_async(session, connection, Act.NARROWED, "system:reach")
    return changed
