"""Connection rules shared by every view: who may see which connection, and revoking.

A revoke is final: the connection turns `revoked`, its token families are revoked, the
audit log and the outbox get their events in the same transaction, and the statuses are
published after the commit (see shared/unit_of_work.py).
"""

from __future__ import annotations

import uuid

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.connections.repository import ConnectionRepository
from shared import receipts
from shared.audit import Actor, append_async
from shared.db.types import utcnow
from shared.errors import NotFound
from shared.metrics import REVOCATIONS
from shared.models import App, Connection, ConnectionStatus, Environment
from shared.outbox import connection_event, emit
from shared.pagination import DEFAULT_LIMIT, after_id, check_limit, id_cursor
from shared.policy.dependency import AppCaller, UserCaller
from shared.receipts import Act
from shared.status import Subject
from shared.unit_of_work import unit_of_work

ID_ORDER = "id"
Page = tuple[list[tuple[Connection, App, list[uuid.UUID]]], str | None]


async def _page(repo: ConnectionRepository, key: bytes, rows: list[tuple[Connection, App]],
                limit: int) -> Page:
    more = len(rows) > limit
    rows = rows[:limit]
    companies = await repo.company_ids([c.id for c, _ in rows])
    next_cursor = id_cursor(key, ID_ORDER, rows[-1][0].id) if more else None
    return [(c, a, companies.get(c.id, [])) for c, a in rows], next_cursor


async def list_for_user(session: AsyncSession, key: bytes, caller: UserCaller,
                        cursor: str | None, limit: int = DEFAULT_LIMIT) -> Page:
    """A page of the caller's own connections (every status)."""
    check_limit(limit)
    repo = ConnectionRepository(session)
    rows = await repo.of_user(caller.user.id, after_id(key, ID_ORDER, cursor), limit + 1)
    return await _page(repo, key, rows, limit)


async def list_for_app(session: AsyncSession, key: bytes, caller: AppCaller,
                       cursor: str | None, limit: int = DEFAULT_LIMIT,
                       status: ConnectionStatus | None = None) -> Page:
    """A page of the calling app's connections, in every environment."""
    check_limit(limit)
    repo = ConnectionRepository(session)
    rows = await repo.of_app(caller.app.id, after_id(key, ID_ORDER, cursor), limit + 1, status)
    return await _page(repo, key, rows, limit)


async def get_visible(session: AsyncSession, connection_id: uuid.UUID, *,
                      environment_id: uuid.UUID | None, user_id: uuid.UUID | None = None,
                      app_id: uuid.UUID | None = None, for_update: bool = False,
                      ) -> tuple[Connection, App, list[uuid.UUID]]:
    """The connection if the caller may see it: same environment (and user or app, when
    given); anything else is 404, whether it exists or not."""
    repo = ConnectionRepository(session)
    row = await repo.get_with_app(connection_id, for_update=for_update)
    if row is not None:
        connection, app = row
        if (
            (environment_id is None or connection.environment_id == environment_id)
            and (user_id is None or connection.user_id == user_id)
            and (app_id is None or connection.app_id == app_id)
        ):
            companies = await repo.company_ids([connection.id])
            return connection, app, companies.get(connection.id, [])
    raise NotFound("no such connection")


async def sandbox_environments(session: AsyncSession, environment_ids: set[uuid.UUID]
                               ) -> set[uuid.UUID]:
    """Which of these environments are partners' sandboxes (one query)."""
    if not environment_ids:
        return set()
    found = await session.exec(select(Environment.id).where(
        col(Environment.id).in_(environment_ids),
        col(Environment.sandbox_partner_id).is_not(None)))
    return set(found.all())


async def get_for_app(session: AsyncSession, connection_id: uuid.UUID, caller: AppCaller,
                      *, for_update: bool = False) -> tuple[Connection, App, list[uuid.UUID]]:
    repo = ConnectionRepository(session)
    row = await repo.get_with_app(connection_id, for_update=for_update)
    if row is None or row[0].app_id != caller.app.id:
        raise NotFound("no such connection")
    companies = await repo.company_ids([connection_id])
    return row[0], row[1], companies.get(connection_id, [])


async def revoke(session: AsyncSession, connection: Connection, actor: Actor, revoked_by: str,
                 reason: str | None, *, event_reason: str | None = None) -> bool:
    """Revoke the connection (final); False if it already was revoked. `revoked_by`
    (`user:<id>`, `accountant:<id>`, `app:<client_id>`, `access_review:<id>`,
    `system:<rule>`) also names its receipt's method. `event_reason` (e.g.
    `access_review`) is also told to the app in the event."""
    if connection.status == ConnectionStatus.REVOKED:
        # Publish again: a retry after a failed publish must heal the status cache.
        unit_of_work(session).publish_status(Subject.CONNECTION, connection.id, False)
        return False
    now = utcnow()
    REVOCATIONS.labels(actor.type).inc()
    connection.status = ConnectionStatus.REVOKED
    connection.revoked_at = now
    connection.revoked_by = revoked_by[:200]
    connection.revoke_reason = reason
    connection.updated_at = now
    session.add(connection)
    families = await ConnectionRepository(session).revoke_families([connection.id], now)
    await append_async(
        session, connection.environment_id, "connection.revoked", actor, "connection",
        connection.id, app_id=str(connection.app_id), debtor_id=str(connection.debtor_id),
        user_id=str(connection.user_id), reason=reason, token_families=len(families),
    )
    told = {"reason": event_reason} if event_reason is not None else {}
    emit(session, **connection_event("connection.revoked", connection,
                                     changed_fields=["status"], **told))
    unit_of_work(session).publish_status(Subject.CONNECTION, connection.id, False)
    await receipts.issue_async(session, connection, Act.REVOKED, revoked_by)
    for family_id in families:
        unit_of_work(session).publish_status(Subject.FAMILY, family_id, False)
    await session.flush()
    return True
