"""The environment overview (docs/product.md 5.5): list, summarise, revoke and bulk-revoke the
connections of the accountant's own environment."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from pydantic import TypeAdapter
from sqlalchemy import Row
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.connections import health, narrowing
from services.registry.connections import service as connections
from services.registry.connections.repository import ConnectionRepository
from services.registry.connections.schemas import AppRef, connection_fields, scope_details
from services.registry.connections.usage import GRANTED_FOR, UNUSED_FOR
from services.registry.overview.cells import export_app_cells, export_scope_cells
from services.registry.overview.repository import (
    PAGE_COLUMNS,
    ExportCells,
    ExportText,
    OverviewRepository,
    nullable_sort,
    sort_value,
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
from shared.models import App, Connection, ConnectionStatus, User, UserTemplate
from shared.pagination import (
    InvalidParameter,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from shared.policy.dependency import UserCaller
from shared.scopes import SCOPES, SENSITIVE_LEVELS

BULK_BATCH = 500
EXPORT_BATCH = 2000
# PostgreSQL export: rows per batch (lines made by the database, about 400 bytes a row),
# how many batches are read while the one before them is written (1 + EXPORT_AHEAD
# batches in memory, and as many pooled connections; 2 reads about 8 % faster than 1 in
# `make bench` on two cores), and how many batch ends one look-ahead statement finds.
EXPORT_TEXT_BATCH = 2000
EXPORT_AHEAD = 2
BOUNDARIES_AHEAD = 8
# The app and scope-list cells an export keeps (sent with every batch) before starting over.
MAX_EXPORT_CELLS = 5_000
BULK_MAX = 10_000
SAMPLE_SIZE = 10


@dataclass
class ExportBatch:
    """Rows of `OverviewRepository.export_batch` and the apps seen so far (id ->
    client_id, name, publisher). On PostgreSQL instead `text`: the batch's CSV lines,
    made by the database."""

    rows: list[tuple]
    apps: dict[Any, tuple[str, str, str | None]]
    text: ExportText | None = None
    # The app-wide health flags of the apps seen so far (id -> flags), and
    # the time before which an expiry is `expiring_soon` (connections/health.py).
    app_flags: dict[Any, list[str]] = field(default_factory=dict)
    expiring_limit: datetime | None = None


def overview_row(connection: Connection, app: App, user: User, company_ids: list[uuid.UUID],
                 lang: str, now: datetime, app_flags: list[str],
                 notice_days: int) -> OverviewRow:
    stale = health.is_unused(connection.status, connection.created_at,
                             connection.last_used_at, now)
    fields = connection_fields(connection, app, company_ids, lang, now)
    return OverviewRow(
        **fields,
        approved_by=connection.approved_by,
        flags=health.flags(connection.status, expires_at=connection.expires_at, unused=stale,
                           user_active=user.active, app_flags=app_flags,
                           expiring_limit=health.expiring_before(now, notice_days),
                           unused_scopes=bool(fields["unused_scopes"])),
        user=UserRef(id=user.id, email=user.email, template=user.template),
        user_deactivated=not user.active,
        stale=stale,
        sensitive_scopes=[s for s in connection.scopes
                          if s in SCOPES and SCOPES[s].sensitivity in SENSITIVE_LEVELS],
        revoked_by=connection.revoked_by,
        revoke_reason=connection.revoke_reason,
    )


_APP_STATUS = PAGE_COLUMNS.index("app_status")
# A last-use time that orjson writes as pydantic does (UTC: `Z`); others are written by
# pydantic itself (`_time_text`).
_TIME = TypeAdapter(datetime)


@lru_cache(maxsize=512)
def _scope_cells(scopes: tuple[str, ...], lang: str) -> tuple[list[dict], list[str]]:
    """A scope list's `scope_details` (as pydantic dumps them) and `sensitive_scopes`:
    made once per list and language, shared by the rows (never changed)."""
    return ([detail.model_dump(mode="json") for detail in scope_details(list(scopes), lang)],
            [s for s in scopes if s in SCOPES and SCOPES[s].sensitivity in SENSITIVE_LEVELS])


def _time_text(at: datetime | None) -> datetime | str | None:
    """A parsed last-use time as the answer holds it: as is when UTC (orjson writes it
    as pydantic does), else pydantic's text of it (other offsets, naive times)."""
    return at if at is None or at.tzinfo is UTC else _TIME.dump_python(at, mode="json")


def _json(text: str | None) -> Any:
    """A JSON column's value from its text, as the driver's json.loads gives it: orjson
    parses it faster, and what orjson refuses (NaN, huge numbers) json.loads reads."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def page_items(rows: list, companies: Mapping[Any, list],
               app_flags: Mapping[uuid.UUID, list[str]], lang: str, now: datetime,
               notice_days: int) -> list[dict[str, Any]]:
    """`overview_row` for plain rows of `OverviewRepository.page_rows`, without ORM
    objects or pydantic models: each row's `OverviewRow` as a dict (its fields in the
    model's order) that orjson (`OPT_UTC_Z`) writes as pydantic writes the model. The
    scope-list and app cells are made once (by pydantic) and shared, and each row's
    last-use times are parsed once (`usage.last_uses` and `usage.unused_scopes` each
    parse them). tests/services/registry/test_overview_rows.py holds the two answers to
    the same bytes."""
    expiring_limit = health.expiring_before(now, notice_days)
    granted_before, unused_before = now - GRANTED_FOR, now - UNUSED_FOR
    apps: dict[uuid.UUID, dict] = {}
    scope_lists: dict[str, Any] = {}  # JSON text -> the list (apps share a few)
    items = []
    for row in rows:
        (ident, app_id, debtor_id, scopes_text, status, created_at, last_used_at, revoked_at,
         expires_at, scope_used_at, approved_by, revoked_by, revoke_reason, client_id, name,
         publisher, _, user_id, email, template, active) = row[:len(PAGE_COLUMNS)]
        app = apps.get(app_id)
        if app is None:
            app = apps[app_id] = AppRef(client_id=client_id, name=name,
                                        publisher=publisher).model_dump(mode="json")
        scopes = scope_lists.get(scopes_text)
        if scopes is None:
            scopes = scope_lists[scopes_text] = _json(scopes_text)
        details, sensitive = _scope_cells(tuple(scopes), lang)
        seen = _json(scope_used_at) or {}
        uses = {scope: datetime.fromisoformat(seen[scope]) if scope in seen else None
                for scope in scopes}
        if status == ConnectionStatus.REVOKED or created_at > granted_before:
            unused: list[str] = []
        else:
            unused = [scope for scope, at in uses.items()
                      if at is None or at < unused_before]
        stale = health.is_unused(status, created_at, last_used_at, now)
        items.append({
            "id": ident, "app": app, "debtor_id": debtor_id,
            "company_ids": sorted(companies.get(ident, [])), "scopes": list(scopes),
            "scope_details": details, "status": str(status), "created_at": created_at,
            "last_used_at": last_used_at, "revoked_at": revoked_at, "expires_at": expires_at,
            "scope_usage": [{"scope": scope, "last_used_at": _time_text(at)}
                            for scope, at in uses.items()],
            "unused_scopes": unused, "approved_by": approved_by,
            "flags": health.flags(status, expires_at=expires_at, unused=stale,
                                  user_active=active, app_flags=app_flags.get(app_id, []),
                                  expiring_limit=expiring_limit,
                                  unused_scopes=bool(unused)),
            "user": {"id": user_id, "email": email, "template": UserTemplate(template)},
            "user_deactivated": not active, "stale": stale, "sensitive_scopes": sensitive,
            "revoked_by": revoked_by, "revoke_reason": revoke_reason,
        })
    return items


def page_json(document: dict[str, Any]) -> bytes:
    """The list document (`OverviewList`: `page_items`' rows and the next cursor, as
    shared/pagination.py `page` gives it) as FastAPI writes it from the models."""
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


def _position(query: OverviewQuery, key: bytes) -> tuple[datetime, uuid.UUID] | None:
    if query.cursor is None:
        return None
    value, last_id = [*decode_cursor(key, query.sort, query.cursor), None, None][:2]
    try:
        return datetime.fromisoformat(str(value)), uuid.UUID(str(last_id))
    except ValueError:
        raise InvalidParameter("the cursor is not valid for this list",
                               parameter="cursor") from None


def _cursor(query: OverviewQuery, key: bytes,
            connection: Connection | Row[*tuple[Any, ...]]) -> str:
    value = sort_value(connection, query.sort)
    return encode_cursor(key, query.sort, [value.isoformat(), str(connection.id)])


async def rows_with_companies(session: AsyncSession, rows: list[tuple[Connection, App, User]],
                              lang: str, now: datetime, notice_days: int,
                              ) -> list[OverviewRow]:
    """The rows with their companies and health flags: a batch query each, whatever the
    page size (never a query per row)."""
    companies = await ConnectionRepository(session).company_ids([c.id for c, _, _ in rows])
    flags: dict[uuid.UUID, list[str]] = {}
    for environment_id in {c.environment_id for c, _, _ in rows}:
        flags.update(await health.app_flags(session, environment_id, {
            a.id: a.status for c, a, _ in rows if c.environment_id == environment_id}))
    return [overview_row(c, a, u, companies.get(c.id, []), lang, now,
                         flags.get(c.app_id, []), notice_days) for c, a, u in rows]


async def list_page(session: AsyncSession, key: bytes, caller: UserCaller,
                    query: OverviewQuery, lang: str,
                    notice_days: int,
                    ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the environment's connections, as `page_items` builds them (the
    rows of `OverviewRow`, ready for orjson)."""
    check_limit(query.limit)
    now, environment_id = utcnow(), caller.user.environment_id
    repo = OverviewRepository(session)
    rows = await repo.page_rows(environment_id, query, query.sort, _position(query, key),
                                query.limit + 1, now)
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    next_cursor = _cursor(query, key, rows[-1]) if more else None
    companies: Mapping[Any, list]
    if rows and len(rows[0]) > len(PAGE_COLUMNS):  # PostgreSQL: the companies are read
        companies = {row[0]: row[-1].split(" ") for row in rows if row[-1]}
    else:
        companies = await repo.company_id_lists([row[0] for row in rows])
    flags = await health.app_flags(session, environment_id,
                                   {row[1]: row[_APP_STATUS] for row in rows})
    return page_items(rows, companies, flags, lang, now, notice_days), next_cursor


async def export_batches(session_factory, environment_id: uuid.UUID, query: OverviewQuery,
                         batch: int | None = None, *,
                         notice_days: int,
                         ) -> AsyncIterator[ExportBatch]:
    """Every matching connection, in batches of `batch` rows, each read in a short
    transaction of its own (keyset order), so an export of any size runs in constant
    memory and holds no lock between batches: on PostgreSQL as CSV lines made by the
    database (`_postgres_batches`), elsewhere as plain rows (`row_batches`)."""
    async with session_factory() as session:
        postgres = session.bind.dialect.name == "postgresql"
    export = _postgres_batches if postgres else row_batches
    async for found in export(session_factory, environment_id, query, batch,
                              notice_days=notice_days):
        yield found


async def row_batches(session_factory, environment_id: uuid.UUID, query: OverviewQuery,
                      batch: int | None = None, *,
                      notice_days: int,
                      ) -> AsyncIterator[ExportBatch]:
    """Every matching connection, in batches of `batch` plain rows (only the exported
    columns, no ORM objects), for csv_export.py to format. Apps are looked up once per
    export."""
    now, batch = utcnow(), batch or EXPORT_BATCH
    by = nullable_sort(query.sort)
    # The row's sort value: last_used_at, expires_at, or created_at for id order.
    at = {"last_used_at": 7, "expires_at": 13}.get(query.sort.lstrip("-"), 6)
    apps: dict[Any, tuple[str, str, str | None]] = {}
    app_flags: dict[Any, list[str]] = {}
    expiring_limit = health.expiring_before(now, notice_days)
    position = None
    while True:
        async with session_factory() as session:
            repo = OverviewRepository(session)
            rows = await repo.export_batch(environment_id, query, query.sort, position,
                                           batch, now)
            if not rows:
                return
            missing = {r[1] for r in rows} - apps.keys()
            if missing:
                statuses = {}
                for app_id, client_id, name, publisher, status in await repo.apps(
                        list(missing)):
                    apps[app_id] = (client_id, name, publisher)
                    statuses[_uuid(app_id)] = status
                found_flags = await health.app_flags(session, environment_id, statuses)
                for app_id in missing:
                    app_flags[app_id] = found_flags.get(_uuid(app_id), [])
        # The session is closed before a slow reader takes the batch.
        yield ExportBatch(rows, apps, app_flags=app_flags,
                          expiring_limit=expiring_limit)
        last = rows[-1]
        last_id = last[0] if isinstance(last[0], uuid.UUID) else uuid.UUID(last[0])
        value = last[at] if by is None or last[at] is not None else by.null_value
        if isinstance(value, str):  # PostgreSQL gives the CSV's text
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:  # SQLite gives naive UTC
            value = value.replace(tzinfo=UTC)
        position = (value, last_id)
        if len(rows) < batch:
            return
        del rows  # before the next batch is read: one batch in memory at once


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def _in_order(reads: AsyncIterator[Callable[[], Awaitable[ExportBatch]]],
                    ahead: int) -> AsyncIterator[ExportBatch]:
    """The batches of `reads`, in order, with up to `ahead` of them read while the one
    before them is awaited or written. Reads still running when the reader stops (a client
    gone mid-stream) are cancelled: each is one short statement, nothing keeps running."""
    running: deque[asyncio.Future] = deque()
    try:
        async for read in reads:
            running.append(asyncio.ensure_future(read()))
            if len(running) > ahead:
                yield await running.popleft()
        while running:
            yield await running.popleft()
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        if (aclose := getattr(reads, "aclose", None)) is not None:
            await aclose()


async def _postgres_batches(session_factory, environment_id: uuid.UUID, query: OverviewQuery,
                            batch: int | None = None, *,
                            notice_days: int,
                            ) -> AsyncIterator[ExportBatch]:
    """The export on PostgreSQL: each batch as CSV text made by the database
    (`OverviewRepository.export_text`) in a short transaction of its own. In id order
    (the default sort) a cheap look-ahead finds where the next batches end, so that they
    are read while this one is (EXPORT_AHEAD + 1 statements at once); in last-used order
    the next batch is read while this one is written."""
    now, batch = utcnow(), batch or EXPORT_TEXT_BATCH
    cells = ExportCells(expiring_limit=health.expiring_before(now, notice_days))

    async def read(after, limit, upto=None) -> ExportBatch:
        async with session_factory() as session:
            repo = OverviewRepository(session)
            while True:
                found = await repo.export_text(environment_id, query, query.sort, after,
                                               limit, now, cells, upto=upto)
                if not (found.missing_apps or found.missing_scopes):
                    return ExportBatch([], {}, text=found)
                # Apps and scope lists not met before: their cells, then the batch again.
                # (At most two per row: a batch always fits after a fresh start.)
                if len(cells.apps) + len(cells.scopes) + len(found.missing_apps) + \
                        len(found.missing_scopes) > MAX_EXPORT_CELLS:
                    cells.apps.clear()
                    cells.app_flags.clear()
                    cells.scopes.clear()
                # Both looked up before either is stored: the reads ahead share `cells`,
                # and one that met an app's name cells without its flags would write
                # the app's rows with an empty flags cell.
                app_rows = await repo.apps(found.missing_apps)
                found_flags = await health.app_flags(
                    session, environment_id, {_uuid(app_id): status
                                              for app_id, *_, status in app_rows})
                for app_id in found.missing_apps:
                    if found_flags.get(_uuid(app_id)):
                        cells.app_flags[app_id] = " ".join(found_flags[_uuid(app_id)])
                for app_id, client_id, name, publisher, _ in app_rows:
                    cells.apps[app_id] = export_app_cells(client_id, name, publisher)
                for scopes_json in found.missing_scopes:
                    cells.scopes[scopes_json] = export_scope_cells(scopes_json)

    by = nullable_sort(query.sort)
    if by is not None:
        async def by_value_reads():
            position = None
            while True:
                pending = asyncio.ensure_future(read(position, batch))
                yield lambda pending=pending: pending
                found = (await pending).text
                if found is None:
                    raise RuntimeError("a PostgreSQL export batch has no text")
                if found.count < batch:
                    return
                if found.last is None:
                    raise RuntimeError("a full export batch has no last row")
                last_id, last_value = found.last
                position = (datetime.fromisoformat(last_value) if last_value
                            else by.null_value, uuid.UUID(last_id))

        async for lines in _in_order(by_value_reads(), EXPORT_AHEAD):
            yield lines
        return

    descending = query.sort.startswith("-")

    async def id_reads():
        after = None
        while True:
            async with session_factory() as session:
                ends = await OverviewRepository(session).export_boundaries(
                    environment_id, query, descending, after, batch, BOUNDARIES_AHEAD, now)
            for upto in ends:
                yield lambda after=after, upto=upto: read(
                    (None, after) if after is not None else None, None, upto)
                after = upto
            if len(ends) < BOUNDARIES_AHEAD:
                # The last batch: whatever is left after the last boundary.
                yield lambda after=after: read(
                    (None, after) if after is not None else None, None)
                return

    async for lines in _in_order(id_reads(), EXPORT_AHEAD):
        yield lines


async def summary(session: AsyncSession, caller: UserCaller) -> list[AppSummary]:
    """Per app: connections by status, users, debtors, granted scopes, the granted scopes
    no connection of the environment ever needed, and last use."""
    repo = OverviewRepository(session)
    environment_id = caller.user.environment_id
    scopes: dict[uuid.UUID, set[str]] = {}
    for app_id, text in await repo.live_scope_sets(environment_id):
        scopes.setdefault(app_id, set()).update(json.loads(text) if text else [])
    used: dict[uuid.UUID, set[str]] = {}
    for app_id, scope in await repo.used_scopes(environment_id):
        used.setdefault(app_id, set()).add(scope)
    result = []
    for app, total, active, suspended, revoked, expired, users, debtors, last in \
            await repo.summary(environment_id):
        result.append(AppSummary(
            app={"client_id": app.client_id, "name": app.name, "publisher": app.publisher},
            connections=total, active=active or 0, suspended=suspended or 0,
            revoked=revoked or 0, expired=expired or 0, users=users, debtors=debtors,
            scopes=sorted(scopes.get(app.id, set())), last_used_at=last,
            never_used_scopes=sorted(scopes.get(app.id, set()) - used.get(app.id, set())),
        ))
    return result


async def revoke_one(session: AsyncSession, caller: UserCaller, connection_id: uuid.UUID,
                     reason: str, lang: str, notice_days: int) -> OverviewRow:
    """An accountant revokes one connection of the environment."""
    connection, app, company_ids = await connections.get_visible(
        session, connection_id, environment_id=caller.user.environment_id, for_update=True)
    await connections.revoke(session, connection, Actor("user", str(caller.user.id)),
                             f"accountant:{caller.user.id}", reason)
    user = await session.get(User, connection.user_id)
    if user is None:
        raise RuntimeError(f"the user of connection {connection.id} is missing")
    return overview_row(connection, app, user, company_ids, lang, utcnow(), [],  # revoked
                        notice_days)


async def narrow_one(session: AsyncSession, caller: UserCaller, connection_id: uuid.UUID,
                     keep: list[str], lang: str, notice_days: int) -> OverviewRow:
    """An accountant drops scopes from one connection of the environment."""
    connection, app, _ = await connections.get_visible(
        session, connection_id, environment_id=caller.user.environment_id, for_update=True)
    await narrowing.narrow(session, connection, keep, Actor("user", str(caller.user.id)),
                           f"accountant:{caller.user.id}")
    user = await session.get(User, connection.user_id)
    if user is None:
        raise RuntimeError(f"the user of connection {connection.id} is missing")
    return (await rows_with_companies(session, [(connection, app, user)], lang, utcnow(),
                                      notice_days))[0]


async def bulk_revoke(session: AsyncSession, caller: UserCaller, flt: OverviewFilter,
                      reason: str, dry_run: bool, lang: str, notice_days: int,
                      ) -> tuple[int, list[OverviewRow]]:
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
        return count, await rows_with_companies(session, sample_rows, lang, now, notice_days)
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
    return revoked, await rows_with_companies(session, sample_rows, lang, now, notice_days)
