"""The overview's queries: filters, keyset order, and the per-app summary.

Every query is confined to one environment (the caller's, from the token). Pages use
keyset conditions on (sort value, id), never OFFSET.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    DateTime,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.overview.schemas import OverviewFilter
from shared.models import App, Connection, ConnectionCompany, ConnectionStatus, User
from shared.scopes import SCOPES

STALE_AFTER = timedelta(days=90)
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def last_activity():
    """When the connection was last used, or made if it never was."""
    return func.coalesce(col(Connection.last_used_at), col(Connection.created_at))


def stale_condition(now: datetime):
    return and_(col(Connection.status) != ConnectionStatus.REVOKED,
                last_activity() < now - STALE_AFTER)


def _like_json_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f'%"{escaped}"%'


def filter_conditions(flt: OverviewFilter, now: datetime) -> list[Any]:
    """SQL conditions for the filter (User and App are joined by the caller)."""
    conditions: list[Any] = []
    if flt.app is not None:
        # A sub-select, not a condition on the joined app: the planner then walks the
        # (environment_id, app_id, id) index in id order instead of sorting the app's rows.
        conditions.append(col(Connection.app_id) == select(App.id).where(
            App.client_id == flt.app).scalar_subquery())
    if flt.user is not None:
        conditions.append(Connection.user_id == flt.user)
    if flt.debtor is not None:
        conditions.append(Connection.debtor_id == flt.debtor)
    if flt.company is not None:
        conditions.append(exists().where(
            ConnectionCompany.connection_id == Connection.id,
            ConnectionCompany.company_id == flt.company,
        ))
    if flt.scope is not None:
        # A write scope grants its read scope: `x.read` also finds connections with `x`.
        names = [flt.scope]
        if flt.scope.endswith(".read") and flt.scope.removesuffix(".read") in SCOPES:
            names.append(flt.scope.removesuffix(".read"))
        text = cast(col(Connection.scopes), String)
        conditions.append(or_(*[text.like(_like_json_string(n), escape="\\") for n in names]))
    if flt.status is not None:
        conditions.append(Connection.status == flt.status)
    if flt.created_after is not None:
        conditions.append(col(Connection.created_at) >= flt.created_after)
    if flt.created_before is not None:
        conditions.append(col(Connection.created_at) < flt.created_before)
    if flt.last_used_after is not None:
        conditions.append(col(Connection.last_used_at) >= flt.last_used_after)
    if flt.last_used_before is not None:
        conditions.append(col(Connection.last_used_at) < flt.last_used_before)
    if flt.user_deactivated is not None:
        conditions.append(col(User.active).is_(not flt.user_deactivated))
    if flt.stale is not None:
        stale = stale_condition(now)
        conditions.append(stale if flt.stale else ~stale)
    return conditions


def _as_text(column, postgres: bool):
    """A UUID column as text on PostgreSQL (psycopg then builds no UUID objects)."""
    return cast(column, String) if postgres else column


def _raw_time(column):
    """A timestamp column read as the driver gives it (no per-value conversion)."""
    return type_coerce(column, DateTime(timezone=True))


ISO_SECONDS = 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'
ISO_MICROSECONDS = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'


def iso_text(column):
    """A timestamptz as Python's `isoformat()` of it in UTC writes it (PostgreSQL only):
    microseconds only when there are any, and +00:00."""
    return func.to_char(
        func.timezone("UTC", column),
        case((func.date_trunc("second", column) == column, literal(ISO_SECONDS)),
             else_=literal(ISO_MICROSECONDS)))


def keyset(stmt, sort: str, after: tuple[datetime, uuid.UUID] | None) -> list:
    """`stmt` in the sort order (id breaks ties) after the position, as one or two
    statements whose results, concatenated, are that order.

    Creation order is id order (UUIDv7 ids are time-ordered): one statement on the
    (environment_id, id) index. Last-used order treats "never used" as NEVER, so those
    rows come first ascending and last descending; they run as their own part (in id
    order) beside the used ones, so that each part walks the plain
    (environment_id, last_used_at, id) index in its own order, with a row-value keyset
    condition, and never needs a sort of the environment's rows."""
    descending = sort.startswith("-")
    ident = col(Connection.id)
    if sort.lstrip("-") != "last_used_at":
        if after is not None:
            stmt = stmt.where(ident < after[1] if descending else ident > after[1])
        return [stmt.order_by(ident.desc() if descending else ident.asc())]
    used_at = col(Connection.last_used_at)
    never = stmt.where(used_at.is_(None))
    used = stmt.where(used_at.is_not(None))
    value, last_id = after if after is not None else (None, None)
    if descending:
        if after is not None and value == NEVER:
            return [never.where(ident < last_id).order_by(ident.desc())]
        if after is not None:
            used = used.where(tuple_(used_at, ident) < tuple_(value, last_id))
        return [used.order_by(used_at.desc(), ident.desc()), never.order_by(ident.desc())]
    if after is not None and value != NEVER:
        return [used.where(tuple_(used_at, ident) > tuple_(value, last_id))
                .order_by(used_at.asc(), ident.asc())]
    if after is not None:
        never = never.where(ident > last_id)
    return [never.order_by(ident.asc()), used.order_by(used_at.asc(), ident.asc())]


class OverviewRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _base(self, environment_id: uuid.UUID, flt: OverviewFilter, now: datetime):
        return (
            select(Connection, App, User)
            .join(App, col(App.id) == Connection.app_id)
            .join(User, col(User.id) == Connection.user_id)
            .where(Connection.environment_id == environment_id, *filter_conditions(flt, now))
        )

    async def page(self, environment_id: uuid.UUID, flt: OverviewFilter, sort: str,
                   after: tuple[datetime, uuid.UUID] | None, limit: int, now: datetime,
                   ) -> list[tuple[Connection, App, User]]:
        """Up to `limit` rows after the position, in the sort order (id breaks ties)."""
        rows: list = []
        for stmt in keyset(self._base(environment_id, flt, now), sort, after):
            rows += (await self.session.exec(stmt.limit(limit - len(rows)))).all()
            if len(rows) >= limit:
                break
        return rows

    async def export_batch(self, environment_id: uuid.UUID, flt: OverviewFilter, sort: str,
                           after: tuple[datetime, uuid.UUID] | None, limit: int,
                           now: datetime) -> list[tuple]:
        """Like `page`, but only the columns of the CSV export, as plain tuples:
        id, app_id, user_id, debtor_id, scopes (JSON text), status, created_at,
        last_used_at, revoked_at, the user's email, template and active flag, whether
        the connection is stale, and on PostgreSQL the sorted company ids,
        space-separated.

        Run on the Core connection (no ORM loading). PostgreSQL gives the ids as text and
        the timestamps already as the CSV writes them (`iso_text`), so no UUID or
        datetime objects are built per row; SQLite gives them as stored."""
        pg = self._postgres
        time = iso_text if pg else _raw_time
        columns = [
            _as_text(col(Connection.id), pg), _as_text(col(Connection.app_id), pg),
            _as_text(col(Connection.user_id), pg), _as_text(col(Connection.debtor_id), pg),
            cast(col(Connection.scopes), String), col(Connection.status),
            time(col(Connection.created_at)), time(col(Connection.last_used_at)),
            time(col(Connection.revoked_at)), col(User.email), col(User.template),
            col(User.active), stale_condition(now),
        ]
        if pg:
            company = col(ConnectionCompany.company_id)
            columns.append(
                select(func.string_agg(cast(company, String),
                                       aggregate_order_by(literal(" "), company)))
                .where(ConnectionCompany.connection_id == Connection.id)
                .scalar_subquery())
        stmt = (
            select(*columns)
            .join(User, col(User.id) == Connection.user_id)
            .where(Connection.environment_id == environment_id, *filter_conditions(flt, now))
        )
        connection = await self.session.connection()
        rows: list = []
        for part in keyset(stmt, sort, after):
            rows += (await connection.execute(part.limit(limit - len(rows)))).all()
            if len(rows) >= limit:
                break
        return rows

    async def company_texts(self, connection_ids: list) -> dict[Any, str]:
        """Each connection's company ids, sorted, space-separated (SQLite; PostgreSQL
        gets them in `export_batch`'s last column)."""
        if not connection_ids:
            return {}
        stmt = select(ConnectionCompany.connection_id, ConnectionCompany.company_id).where(
            col(ConnectionCompany.connection_id).in_(connection_ids))
        found: dict[Any, list[str]] = {}
        for connection_id, company_id in (await self.session.exec(stmt)).all():
            found.setdefault(connection_id, []).append(str(company_id))
        return {k: " ".join(sorted(v)) for k, v in found.items()}

    async def apps(self, app_ids: list) -> list[tuple]:
        """id (as `export_batch` gives it), client_id, name and publisher of the apps."""
        ids = [a if isinstance(a, uuid.UUID) else uuid.UUID(a) for a in app_ids]
        stmt = select(_as_text(col(App.id), self._postgres), App.client_id, App.name,
                      App.publisher).where(col(App.id).in_(ids))
        return list((await self.session.exec(stmt)).all())

    @property
    def _postgres(self) -> bool:
        return self.session.bind.dialect.name == "postgresql"

    async def count(self, environment_id: uuid.UUID, flt: OverviewFilter, now: datetime,
                    *, live_only: bool = False) -> int:
        stmt = (
            select(func.count()).select_from(Connection)
            .join(App, col(App.id) == Connection.app_id)
            .join(User, col(User.id) == Connection.user_id)
            .where(Connection.environment_id == environment_id, *filter_conditions(flt, now))
        )
        if live_only:
            stmt = stmt.where(col(Connection.status) != ConnectionStatus.REVOKED)
        return (await self.session.exec(stmt)).one()

    async def live_ids(self, environment_id: uuid.UUID, flt: OverviewFilter, now: datetime,
                       after: uuid.UUID | None, limit: int) -> list[uuid.UUID]:
        """Ids of matching connections that are not revoked, in id order."""
        stmt = (
            select(Connection.id)
            .join(App, col(App.id) == Connection.app_id)
            .join(User, col(User.id) == Connection.user_id)
            .where(Connection.environment_id == environment_id, *filter_conditions(flt, now),
                   col(Connection.status) != ConnectionStatus.REVOKED)
        )
        if after is not None:
            stmt = stmt.where(col(Connection.id) > after)
        return list((await self.session.exec(stmt.order_by(col(Connection.id)).limit(limit))).all())

    async def summary(self, environment_id: uuid.UUID) -> list[tuple]:
        """Per app: counts by status, distinct users and debtors, last use."""
        def by_status(value: ConnectionStatus):
            return func.sum(case((col(Connection.status) == value, 1), else_=0))

        stmt = (
            select(App, func.count(), by_status(ConnectionStatus.ACTIVE),
                   by_status(ConnectionStatus.SUSPENDED), by_status(ConnectionStatus.REVOKED),
                   func.count(func.distinct(Connection.user_id)),
                   func.count(func.distinct(Connection.debtor_id)),
                   func.max(Connection.last_used_at))
            .join(App, col(App.id) == Connection.app_id)
            .where(Connection.environment_id == environment_id)
            .group_by(col(App.id)).order_by(col(App.name), col(App.id))
        )
        return list((await self.session.exec(stmt)).all())

    async def live_scope_sets(self, environment_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
        """The distinct scope lists (as JSON text) of live connections, per app."""
        text = cast(col(Connection.scopes), String)
        stmt = select(Connection.app_id, text).where(
            Connection.environment_id == environment_id,
            col(Connection.status) != ConnectionStatus.REVOKED,
        ).distinct()
        return list((await self.session.exec(stmt)).all())

