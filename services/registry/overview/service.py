"""The environment overview (SPEC 5.5): list, summarise, revoke and bulk-revoke the
connections of the accountant's own environment."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.connections import service as connections
from services.registry.connections.repository import ConnectionRepository
from services.registry.connections.schemas import connection_fields
from services.registry.deps import UserCaller
from services.registry.overview.repository import (
    NEVER,
    STALE_AFTER,
    OverviewRepository,
)
from services.registry.overview.schemas import (
    AppSummary,
    OverviewFilter,
    OverviewQuery,
    OverviewRow,
    UserRef,
)
from shared.audit import Actor, append_async
from shared.db.types import utcnow
from shared.errors import Invalid
from shared.models import App, Connection, ConnectionStatus, User
from shared.pagination import (
    InvalidParameter,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from shared.scopes import SCOPES, Sensitivity

SENSITIVE = {Sensitivity.SENSITIVE, Sensitivity.SPECIAL_CATEGORY}
BULK_BATCH = 500
EXPORT_BATCH = 2000
BULK_MAX = 10_000
SAMPLE_SIZE = 10


@dataclass
class ExportBatch:
    """Rows of `OverviewRepository.export_batch`, the company ids of each by row id
    (None when the rows carry them) and the apps seen so far (id -> client_id, name,
    publisher)."""

    rows: list[tuple]
    companies: dict[Any, str] | None
    apps: dict[Any, tuple[str, str, str | None]]


def overview_row(connection: Connection, app: App, user: User, company_ids: list[uuid.UUID],
                 lang: str, now: datetime) -> OverviewRow:
    last = connection.last_used_at or connection.created_at
    return OverviewRow(
        **connection_fields(connection, app, company_ids, lang),
        user=UserRef(id=user.id, email=user.email, template=user.template),
        user_deactivated=not user.active,
        stale=connection.status != ConnectionStatus.REVOKED and last < now - STALE_AFTER,
        sensitive_scopes=[s for s in connection.scopes
                          if s in SCOPES and SCOPES[s].sensitivity in SENSITIVE],
        revoked_by=connection.revoked_by,
        revoke_reason=connection.revoke_reason,
    )


def _position(query: OverviewQuery, key: bytes) -> tuple[datetime, uuid.UUID] | None:
    if query.cursor is None:
        return None
    value, last_id = [*decode_cursor(key, query.sort, query.cursor), None, None][:2]
    try:
        return datetime.fromisoformat(str(value)), uuid.UUID(str(last_id))
    except ValueError:
        raise InvalidParameter("the cursor is not valid for this list",
                               parameter="cursor") from None


def _cursor(query: OverviewQuery, key: bytes, connection: Connection) -> str:
    if query.sort.lstrip("-") == "last_used_at":
        value = connection.last_used_at or NEVER
    else:
        value = connection.created_at
    return encode_cursor(key, query.sort, [value.isoformat(), str(connection.id)])


async def rows_with_companies(session: AsyncSession, rows: list[tuple[Connection, App, User]],
                              lang: str, now: datetime) -> list[OverviewRow]:
    companies = await ConnectionRepository(session).company_ids([c.id for c, _, _ in rows])
    return [overview_row(c, a, u, companies.get(c.id, []), lang, now) for c, a, u in rows]


async def list_page(session: AsyncSession, key: bytes, caller: UserCaller,
                    query: OverviewQuery, lang: str) -> tuple[list[OverviewRow], str | None]:
    """One page of the environment's connections."""
    check_limit(query.limit)
    now = utcnow()
    rows = await OverviewRepository(session).page(
        caller.user.environment_id, query, query.sort, _position(query, key),
        query.limit + 1, now,
    )
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    next_cursor = _cursor(query, key, rows[-1][0]) if more else None
    return await rows_with_companies(session, rows, lang, now), next_cursor


async def export_batches(session_factory, environment_id: uuid.UUID, query: OverviewQuery,
                         batch: int | None = None) -> AsyncIterator[ExportBatch]:
    """Every matching connection, in batches of `batch` plain rows (only the exported
    columns, no ORM objects), each read in a short transaction of its own (keyset
    order), so an export of any size runs in constant memory and holds no lock or
    database connection between batches. Apps are looked up once per export."""
    now, batch = utcnow(), batch or EXPORT_BATCH
    by_last_use = query.sort.lstrip("-") == "last_used_at"
    apps: dict[Any, tuple[str, str, str | None]] = {}
    position = None
    while True:
        async with session_factory() as session:
            repo = OverviewRepository(session)
            rows = await repo.export_batch(environment_id, query, query.sort, position,
                                           batch, now)
            if not rows:
                return
            # PostgreSQL reads the company ids with the rows; SQLite here.
            companies = None if len(rows[0]) > 13 else await repo.company_texts(
                [r[0] for r in rows])
            missing = {r[1] for r in rows} - apps.keys()
            if missing:
                for app_id, client_id, name, publisher in await repo.apps(list(missing)):
                    apps[app_id] = (client_id, name, publisher)
        # The session is closed before a slow reader takes the batch.
        yield ExportBatch(rows, companies, apps)
        last = rows[-1]
        last_id = last[0] if isinstance(last[0], uuid.UUID) else uuid.UUID(last[0])
        value = (last[7] or NEVER) if by_last_use else last[6]
        if isinstance(value, str):  # PostgreSQL gives the CSV's text
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:  # SQLite gives naive UTC
            value = value.replace(tzinfo=UTC)
        position = (value, last_id)
        if len(rows) < batch:
            return
        del rows, companies  # before the next batch is read: one batch in memory at once


async def summary(session: AsyncSession, caller: UserCaller) -> list[AppSummary]:
    """Per app: connections by status, users, debtors, granted scopes and last use."""
    repo = OverviewRepository(session)
    environment_id = caller.user.environment_id
    scopes: dict[uuid.UUID, set[str]] = {}
    for app_id, text in await repo.live_scope_sets(environment_id):
        scopes.setdefault(app_id, set()).update(json.loads(text) if text else [])
    result = []
    for app, total, active, suspended, revoked, users, debtors, last in \
            await repo.summary(environment_id):
        result.append(AppSummary(
            app={"client_id": app.client_id, "name": app.name, "publisher": app.publisher},
            connections=total, active=active or 0, suspended=suspended or 0,
            revoked=revoked or 0, users=users, debtors=debtors,
            scopes=sorted(scopes.get(app.id, set())), last_used_at=last,
        ))
    return result


async def revoke_one(session: AsyncSession, caller: UserCaller, connection_id: uuid.UUID,
                     reason: str, lang: str) -> OverviewRow:
    """An accountant revokes one connection of the environment."""
    connection, app, company_ids = await connections.get_visible(
        session, connection_id, environment_id=caller.user.environment_id, for_update=True)
    await connections.revoke(session, connection, Actor("user", str(caller.user.id)),
                             f"accountant:{caller.user.id}", reason)
    user = await session.get(User, connection.user_id)
    return overview_row(connection, app, user, company_ids, lang, utcnow())


async def bulk_revoke(session: AsyncSession, caller: UserCaller, flt: OverviewFilter,
                      reason: str, dry_run: bool, lang: str) -> tuple[int, list[OverviewRow]]:
    """Revoke every live connection that matches (or, dry run, count them): all in this
    transaction, each audited and evented like a single revoke."""
    if flt.is_empty():
        raise InvalidParameter("give at least one filter criterion", parameter="filter")
    environment_id, now = caller.user.environment_id, utcnow()
    repo = OverviewRepository(session)
    count = await repo.count(environment_id, flt, now, live_only=True)
    if count > BULK_MAX:
        raise Invalid(f"{count} connections match; narrow the filter to at most {BULK_MAX}")
    sample_rows = [r for r in await repo.page(environment_id, flt, "created_at", None,
                                              SAMPLE_SIZE * 2, now)
                   if r[0].status != ConnectionStatus.REVOKED][:SAMPLE_SIZE]
    if dry_run or count == 0:
        return count, await rows_with_companies(session, sample_rows, lang, now)
    actor = Actor("user", str(caller.user.id))
    after, revoked = None, 0
    while ids := await repo.live_ids(environment_id, flt, now, after, BULK_BATCH):
        for connection_id in ids:
            connection, _, _ = await connections.get_visible(
                session, connection_id, environment_id=environment_id, for_update=True)
            revoked += await connections.revoke(session, connection, actor,
                                                f"accountant:{caller.user.id}", reason)
        after = ids[-1]
    await append_async(session, environment_id, "connections.bulk_revoked", actor,
                       "environment", environment_id, count=revoked, reason=reason,
                       filter=flt.model_dump(mode="json", exclude_none=True))
    return revoked, await rows_with_companies(session, sample_rows, lang, now)
