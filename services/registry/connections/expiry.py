"""Expiry and renewal (docs/product.md section 3): a connection of an environment with a
consent lifetime (shared/policy/lifetime.py) expires at `expires_at`. Its app is told
ahead (`connection.expiring`, once per expiry), then the status turns `expired`, its
tokens fail on the next call (the status is published like a revoke's) and the app gets
`connection.expired`. A user who may consent renews it: the same connection, active
again, with a new expiry (`connection.renewed`).

Status precedence: revoked over suspended over expired. A suspended connection whose
time passes stays suspended; when its suspension ends it becomes `expired`
(lifecycle.py), never `active`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared import receipts
from shared.audit import Actor, append_async
from shared.errors import Conflict, Forbidden
from shared.models import Connection, ConnectionStatus, Environment, User
from shared.outbox import connection_event, emit
from shared.policy import lifetime, may_consent
from shared.policy.lifetime import after_change
from shared.receipts import Act
from shared.status import Subject
from shared.unit_of_work import unit_of_work

BATCH = 500
SYSTEM = Actor("system", "consent_lifetime")
LIFETIME_RULE = "system:consent_lifetime"  # who expires a connection, in its receipt
LIVE = (ConnectionStatus.ACTIVE, ConnectionStatus.SUSPENDED)


def lifetime_start(connection: Connection) -> datetime:
    """Where the connection's lifetime counts from: its last renewal, or its consent."""
    return connection.renewed_at or connection.created_at


async def expire(session: AsyncSession, connection: Connection, actor: Actor,
                 now: datetime) -> None:
    """Mark the connection expired: audited, evented, and published so that its tokens
    fail on their next call."""
    connection.status = ConnectionStatus.EXPIRED
    connection.suspended_reason = None
    connection.updated_at = now
    session.add(connection)
    await append_async(session, connection.environment_id, "connection.expired", actor,
                       "connection", connection.id, app_id=str(connection.app_id),
                       user_id=str(connection.user_id),
                       expires_at=connection.expires_at.isoformat()
                       if connection.expires_at else None)
    emit(session, **connection_event("connection.expired", connection,
                                     changed_fields=["status"]))
    unit_of_work(session).publish_status(Subject.CONNECTION, connection.id, False)
    await receipts.issue_async(session, connection, Act.EXPIRED, LIFETIME_RULE)


async def renew(session: AsyncSession, connection: Connection, user: User,
                now: datetime, lang: str = "en") -> Connection:
    """Renew the connection as `user` (its own user: the caller looked it up scoped to
    them, and the policy's `me.connections.renew` admits them; they must still be one who
    may consent): a new expiry from now, `expired` becomes `active` (a suspended one
    stays suspended). Conflict when it is revoked or does not expire. Its receipt carries
    the catalogue's words in `lang` (the caller's language)."""
    if connection.status == ConnectionStatus.REVOKED:
        raise Conflict("this connection is revoked; link the app again instead")
    if connection.expires_at is None:
        raise Conflict("this connection does not expire")
    environment = await session.get(Environment, connection.environment_id)
    if not may_consent(user, environment):
        raise Forbidden("this login may not renew the connection")
    renewal = lifetime.renew(connection, environment, now)
    session.add(connection)
    await append_async(session, connection.environment_id, "connection.renewed",
                       Actor("user", str(user.id)), "connection", connection.id,
                       **renewal.audit_fields(connection, "api"))
    emit(session, **connection_event("connection.renewed", connection,
                                     changed_fields=renewal.changed_fields))
    if connection.status == ConnectionStatus.ACTIVE:
        unit_of_work(session).publish_status(Subject.CONNECTION, connection.id, True)
    await receipts.issue_async(session, connection, Act.RENEWED, f"user:{user.id}",
                               lang=lang)
    return connection


async def apply_lifetime(session: AsyncSession, environment: Environment,
                         now: datetime) -> int:
    """After a change of the environment's lifetime: a new expiry for every live
    (active or suspended) connection, from its consent or last renewal, never sooner
    than 14 days from now (shared/policy/lifetime.after_change). Expired connections
    stay expired until renewed. Returns how many connections changed; each gets
    `connection.updated` (changed field `expires_at`)."""
    # Each row locked, and its status checked again once a write holding it commits (a
    # connection revoked meanwhile is left alone).
    stmt = select(Connection).where(Connection.environment_id == environment.id,
                                    col(Connection.status).in_(LIVE)).with_for_update()
    changed, after = 0, None
    while True:
        page = stmt if after is None else stmt.where(col(Connection.id) > after)
        rows = (await session.exec(page.order_by(col(Connection.id)).limit(BATCH))).all()
        if not rows:
            return changed
        for connection in rows:
            new = after_change(environment, connection.scopes, lifetime_start(connection),
                               connection.expires_at, now)
            if new == connection.expires_at:
                continue
            connection.expires_at, connection.updated_at = new, now
            session.add(connection)
            emit(session, **connection_event("connection.updated", connection,
                                             changed_fields=["expires_at"]))
            changed += 1
        await session.flush()
        after = rows[-1].id


async def _locked_batch(session: AsyncSession, conditions: list, limit: int
                        ) -> Sequence[Connection]:
    """The first `limit` connections that meet `conditions` (earliest expiry first),
    locked for update after their environments (FOR KEY SHARE, in id order).

    The order matters: the job appends to the environment's audit chain, whose insert
    takes a KEY SHARE lock on the environment row, and a consent lifetime change holds
    that row FOR UPDATE while it gives the environment's live connections new
    expiries. Locking a connection first and the environment second, the job and the
    change each waited for the other (PostgreSQL aborted one: deadlock). Now the job
    waits before it locks any connection, and then finds the expiries the change set;
    the change never meets a connection the job is expiring."""
    first = (select(Connection.environment_id).where(*conditions)
             .order_by(col(Connection.expires_at), col(Connection.id)).limit(limit)
             .subquery())
    environments = list((await session.exec(
        select(Environment.id).where(col(Environment.id).in_(select(first.c.environment_id)))
        .order_by(col(Environment.id)).with_for_update(read=True, key_share=True))).all())
    if not environments:
        return []
    stmt = (
        select(Connection)
        .where(*conditions, col(Connection.environment_id).in_(environments))
        .order_by(col(Connection.expires_at), col(Connection.id))
        .with_for_update()
    )
    return (await session.exec(stmt.limit(limit))).all()


async def notify_expiring(session: AsyncSession, now: datetime, notice: timedelta,
                          limit: int = BATCH) -> int:
    """`connection.expiring` for active connections that expire within `notice`, once
    per expiry (a renewal or a lifetime change sets a new one). Returns how many."""
    conditions = [Connection.status == ConnectionStatus.ACTIVE,
                  col(Connection.expires_at) > now, col(Connection.expires_at) <= now + notice,
                  or_(col(Connection.expiry_notice_for).is_(None),
                      col(Connection.expiry_notice_for) != col(Connection.expires_at))]
    sent = 0
    for connection in await _locked_batch(session, conditions, limit):
        connection.expiry_notice_for = connection.expires_at
        session.add(connection)
        await append_async(session, connection.environment_id, "connection.expiring", SYSTEM,
                           "connection", connection.id, app_id=str(connection.app_id),
                           expires_at=connection.expires_at.isoformat()
                           if connection.expires_at else None)
        emit(session, **connection_event("connection.expiring", connection,
                                         changed_fields=[]))
        sent += 1
    await session.flush()
    return sent


async def expire_due(session: AsyncSession, now: datetime, limit: int = BATCH) -> list[uuid.UUID]:
    """Expire active connections whose time has come (suspended ones stay suspended:
    they expire when resumed). Returns their ids."""
    conditions = [Connection.status == ConnectionStatus.ACTIVE,
                  col(Connection.expires_at) <= now]
    done = []
    for connection in await _locked_batch(session, conditions, limit):
        await expire(session, connection, SYSTEM, now)
        done.append(connection.id)
    return done
