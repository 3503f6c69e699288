"""The outbox relay ("events.relay"): fans unrelayed events out to one delivery per
event and endpoint of every app that may see them, and marks them relayed, in one
transaction per batch. The sweeper ("webhooks.sweep") runs it again and re-enqueues due
deliveries, so nothing is lost when a process dies or Redis is flushed."""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.events.audience import audience
from services.sync.events.queue import enqueue_deliveries
from services.sync.webhooks.schedule import max_attempts
from shared.db.types import utcnow
from shared.metrics import OUTBOX_DEPTH
from shared.models import (
    DeliveryStatus,
    Event,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from shared.runtime import Runtime

log = structlog.get_logger("koppel.relay")
BATCH = 200
MAX_BATCHES = 50  # per run; the next nudge or sweep carries on
SWEEP_LIMIT = 1000


def rfc3339(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message(event: Event) -> dict:
    """The webhook body of an event."""
    return {"type": event.type, "timestamp": rfc3339(event.created_at), "data": event.data}


async def fan_out(session: AsyncSession, event: Event) -> list[WebhookDelivery]:
    apps = await audience(session, event)
    if not apps:
        return []
    stmt = select(WebhookEndpoint).where(
        col(WebhookEndpoint.app_id).in_(apps),
        WebhookEndpoint.status == WebhookEndpointStatus.ACTIVE,
    )
    endpoints = [e for e in (await session.exec(stmt)).all() if event.type in e.events]
    now = utcnow()
    deliveries = [
        WebhookDelivery(
            endpoint_id=endpoint.id, app_id=endpoint.app_id, event_id=event.id,
            type=event.type, message_id=f"msg_{event.id.hex}", payload=message(event),
            max_attempts=max_attempts(), next_attempt_at=now,
        )
        for endpoint in endpoints
    ]
    session.add_all(deliveries)
    return deliveries


async def relay(runtime: Runtime) -> int:
    """Relay every unrelayed event; returns how many deliveries it made."""
    made = 0
    for _ in range(MAX_BATCHES):
        new: list[uuid.UUID] = []
        async with runtime.async_session() as session, session.begin():
            stmt = select(Event).where(col(Event.relayed_at).is_(None))
            stmt = stmt.order_by(col(Event.id)).limit(BATCH)
            if session.bind.dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            events = (await session.exec(stmt)).all()
            now = utcnow()
            for event in events:
                new.extend(d.id for d in await fan_out(session, event))
                event.relayed_at = now
                session.add(event)
        made += len(new)
        await enqueue_deliveries(runtime.redis, [(i, 1, None) for i in new])
        if len(events) < BATCH:
            break
    if made:
        log.info("relayed events", deliveries=made)
    return made


async def sweep(runtime: Runtime) -> dict[str, int]:
    """Relay what a lost nudge left, and re-enqueue every due delivery (arq refuses the
    ones it still holds)."""
    made = await relay(runtime)
    async with runtime.async_session() as session:
        stmt = select(WebhookDelivery.id, WebhookDelivery.attempts).where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            col(WebhookDelivery.next_attempt_at) <= utcnow(),
        ).order_by(col(WebhookDelivery.next_attempt_at)).limit(SWEEP_LIMIT)
        due = (await session.exec(stmt)).all()
        pending = select(func.count()).where(WebhookDelivery.status == DeliveryStatus.PENDING)
        unrelayed = select(func.count()).where(col(Event.relayed_at).is_(None))
        OUTBOX_DEPTH.labels("deliveries").set((await session.exec(pending)).one())
        OUTBOX_DEPTH.labels("events").set((await session.exec(unrelayed)).one())
    queued = await enqueue_deliveries(runtime.redis, [(i, n + 1, None) for i, n in due])
    return {"relayed": made, "due": len(due), "enqueued": queued}
