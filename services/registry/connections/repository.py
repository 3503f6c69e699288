"""Queries about connections, for Manage apps and the partner's view."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.models import App, Connection, ConnectionCompany, TokenFamily


class ConnectionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def company_ids(self, connection_ids: Sequence[uuid.UUID]
                          ) -> dict[uuid.UUID, list[uuid.UUID]]:
        """The companies of each connection."""
        result: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        if not connection_ids:
            return result
        stmt = select(ConnectionCompany).where(
            col(ConnectionCompany.connection_id).in_(list(connection_ids))
        )
        for row in (await self.session.exec(stmt)).all():
            result[row.connection_id].append(row.company_id)
        return result

    async def of_user(self, user_id: uuid.UUID, after: uuid.UUID | None, limit: int
                      ) -> list[tuple[Connection, App]]:
        """A page of the user's connections in id (creation) order."""
        stmt = (
            select(Connection, App).join(App, col(App.id) == Connection.app_id)
            .where(Connection.user_id == user_id)
        )
        if after is not None:
            stmt = stmt.where(col(Connection.id) > after)
        return list((await self.session.exec(stmt.order_by(col(Connection.id)).limit(limit))).all())

    async def of_app(self, app_id: uuid.UUID, after: uuid.UUID | None, limit: int,
                     status: str | None = None) -> list[tuple[Connection, App]]:
        """A page of the app's connections, in every environment, in id order."""
        stmt = (
            select(Connection, App).join(App, col(App.id) == Connection.app_id)
            .where(Connection.app_id == app_id)
        )
        if after is not None:
            stmt = stmt.where(col(Connection.id) > after)
        if status is not None:
            stmt = stmt.where(Connection.status == status)
        return list((await self.session.exec(stmt.order_by(col(Connection.id)).limit(limit))).all())

    async def get_with_app(self, connection_id: uuid.UUID, *, for_update: bool = False
                           ) -> tuple[Connection, App] | None:
        stmt = (
            select(Connection, App).join(App, col(App.id) == Connection.app_id)
            .where(Connection.id == connection_id)
        )
        if for_update and self.session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(of=Connection)
        return (await self.session.exec(stmt)).first()

    async def revoke_families(self, connection_ids: Sequence[uuid.UUID], now
                              ) -> list[uuid.UUID]:
        """Revoke the live token families of the connections; returns their ids."""
        stmt = select(TokenFamily.id).where(
            col(TokenFamily.connection_id).in_(list(connection_ids)),
            col(TokenFamily.revoked_at).is_(None),
        )
        family_ids = list((await self.session.exec(stmt)).all())
        if family_ids:
            await self.session.exec(
                update(TokenFamily).where(col(TokenFamily.id).in_(family_ids))
                .values(revoked_at=now)
            )
        return family_ids
