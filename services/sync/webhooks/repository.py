"""Queries on webhook endpoints, deliveries and attempts."""

from __future__ import annotations

import uuid
from collections import defaultdict

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def endpoint(self, app_id: uuid.UUID, endpoint_id: uuid.UUID, *,
                       for_update: bool = False) -> WebhookEndpoint | None:
        """The app's endpoint with this id; None for another app's or an unknown id. With
        `for_update`, locked until the transaction ends (PostgreSQL)."""
        stmt = select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.app_id == app_id
        )
        if for_update and self.session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        return (await self.session.exec(stmt)).first()

    async def count(self, app_id: uuid.UUID) -> int:
        stmt = select(func.count()).select_from(WebhookEndpoint).where(
            WebhookEndpoint.app_id == app_id)
        return (await self.session.exec(stmt)).one()

    async def endpoints(self, app_id: uuid.UUID, after: uuid.UUID | None, limit: int
                        ) -> list[WebhookEndpoint]:
        stmt = select(WebhookEndpoint).where(WebhookEndpoint.app_id == app_id)
        if after is not None:
            stmt = stmt.where(col(WebhookEndpoint.id) > after)
        stmt = stmt.order_by(col(WebhookEndpoint.id)).limit(limit)
        return list((await self.session.exec(stmt)).all())

    async def delivery(self, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
                       ) -> WebhookDelivery | None:
        stmt = select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id
        )
        return (await self.session.exec(stmt)).first()

    async def deliveries(self, endpoint_id: uuid.UUID, before: uuid.UUID | None, limit: int
                         ) -> list[WebhookDelivery]:
        """Newest first."""
        stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        if before is not None:
            stmt = stmt.where(col(WebhookDelivery.id) < before)
        stmt = stmt.order_by(col(WebhookDelivery.id).desc()).limit(limit)
        return list((await self.session.exec(stmt)).all())

    async def attempts(self, delivery_ids: list[uuid.UUID]
                       ) -> dict[uuid.UUID, list[WebhookAttempt]]:
        if not delivery_ids:
            return {}
        stmt = select(WebhookAttempt).where(
            col(WebhookAttempt.delivery_id).in_(delivery_ids)
        ).order_by(col(WebhookAttempt.delivery_id), col(WebhookAttempt.attempt))
        result: dict[uuid.UUID, list[WebhookAttempt]] = defaultdict(list)
        for attempt in (await self.session.exec(stmt)).all():
            result[attempt.delivery_id].append(attempt)
        return result
