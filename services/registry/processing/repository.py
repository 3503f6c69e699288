"""The queries behind the records of processing: each groups the environment's live
connections by app (shared/policy/coverage.py says what live and covered mean)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import distinct, func, select, true
from sqlmodel import col
from sqlmodel import select as select_models
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db.base import table_of
from shared.models import App, Debtor, WebhookEndpoint, WebhookEndpointStatus
from shared.policy import coverage

_conn = coverage.CONNECTIONS
_debtor = table_of(Debtor)


def _live(environment_id: uuid.UUID, now: datetime) -> list[Any]:
    return [_conn.c.environment_id == environment_id, coverage.live(now, _conn)]


class ProcessingRepository:
    def __init__(self, session: AsyncSession, environment_id: uuid.UUID, now: datetime
                 ) -> None:
        self.session, self.live = session, _live(environment_id, now)

    async def _rows(self, stmt: Any) -> list[Any]:
        return list((await self.session.exec(stmt)).all())

    async def totals(self) -> list[Any]:
        """Per app id: its live connections and the oldest one's consent time."""
        return await self._rows(
            select(_conn.c.app_id, func.count().label("connections"),
                   func.min(_conn.c.created_at).label("since"))
            .where(*self.live).group_by(_conn.c.app_id))

    async def scopes(self) -> dict[uuid.UUID, set[str]]:
        """Per app id: every scope of its live connections (the JSON lists unnested)."""
        dialect = self.session.get_bind().dialect.name
        unnest = (func.json_array_elements_text(_conn.c.scopes) if dialect == "postgresql"
                  else func.json_each(_conn.c.scopes)).table_valued("value")
        rows = await self._rows(select(_conn.c.app_id, unnest.c.value)
                                .select_from(_conn.join(unnest, true()))
                                .where(*self.live).distinct())
        found: dict[uuid.UUID, set[str]] = defaultdict(set)
        for app_id, scope in rows:
            found[app_id].add(scope)
        return found

    async def debtors(self) -> dict[uuid.UUID, list[Any]]:
        rows = await self._rows(
            select(_conn.c.app_id, _debtor.c.id, _debtor.c.name)
            .select_from(_conn.join(_debtor, _debtor.c.id == _conn.c.debtor_id))
            .where(*self.live).distinct().order_by(_debtor.c.name, _debtor.c.id))
        found: dict[uuid.UUID, list[Any]] = defaultdict(list)
        for app_id, debtor_id, name in rows:
            found[app_id].append((debtor_id, name))
        return found

    async def employees(self) -> dict[uuid.UUID, int]:
        """Per app id: the employees that at least one of its live connections covers."""
        emp, cover = coverage.EMPLOYEES, coverage.COVERED
        rows = await self._rows(
            select(_conn.c.app_id, func.count(distinct(emp.c.id)))
            .select_from(_conn.join(cover, coverage.consented_company(_conn, cover))
                         .join(emp, coverage.of_company(cover, emp)))
            .where(*self.live, *coverage.same_owner(_conn, emp)).group_by(_conn.c.app_id))
        return dict(rows)

    async def apps(self, ids: set[uuid.UUID]) -> list[App]:
        return list((await self.session.exec(
            select_models(App).where(col(App.id).in_(ids)))).all())

    async def webhook_urls(self, ids: set[uuid.UUID]) -> list[tuple[uuid.UUID, str]]:
        return [(app_id, url) for app_id, url in await self._rows(
            select(col(WebhookEndpoint.app_id), col(WebhookEndpoint.url))
            .where(col(WebhookEndpoint.app_id).in_(ids),
                   col(WebhookEndpoint.status) == WebhookEndpointStatus.ACTIVE))]
