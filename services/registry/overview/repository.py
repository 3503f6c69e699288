"""The overview's queries: filters, keyset order, and the per-app summary.

Every query is confined to one environment (the caller's, from the token). Pages use
keyset conditions on (sort value, id), never OFFSET.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, case, cast, exists, func, literal, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.overview.schemas import OverviewFilter
from shared.db.types import UTCDateTime
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


def sort_expression(key: str):
    """The ordering column besides the id; None for creation order, which is the id
    order (UUIDv7 ids are time-ordered) and so runs on the (environment_id, id) index."""
    if key.lstrip("-") == "last_used_at":
        return func.coalesce(col(Connection.last_used_at), literal(NEVER, UTCDateTime()))
    return None


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
        expr, descending = sort_expression(sort), sort.startswith("-")
        stmt = self._base(environment_id, flt, now)
        ident = col(Connection.id)
        if expr is None:
            if after is not None:
                stmt = stmt.where(ident < after[1] if descending else ident > after[1])
            order = ident.desc() if descending else ident.asc()
            return list((await self.session.exec(stmt.order_by(order).limit(limit))).all())
        if after is not None:
            value, last_id = after
            if descending:
                stmt = stmt.where(or_(expr < value, and_(expr == value,
                                                         col(Connection.id) < last_id)))
            else:
                stmt = stmt.where(or_(expr > value, and_(expr == value,
                                                         col(Connection.id) > last_id)))
        order = (expr.desc(), col(Connection.id).desc()) if descending else (
            expr.asc(), col(Connection.id).asc())
        return list((await self.session.exec(stmt.order_by(*order).limit(limit))).all())

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

