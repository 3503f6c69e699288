"""`endpoint.disabled`: when Koppel disables an endpoint (it answered 410 Gone, or its
deliveries failed for a day), the app's other active endpoints that subscribe to it
receive a message, in the transaction that disables it (no outbox event: it concerns
the app, not a customer, so no audience to work out)."""

from __future__ import annotations

import uuid

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.webhooks.schedule import max_attempts
from shared.db.types import utcnow
from shared.events import CATALOGUE, ENDPOINT_DISABLED, rfc3339
from shared.models import WebhookDelivery, WebhookEndpoint, WebhookEndpointStatus
from shared.unit_of_work import unit_of_work


async def announce_disabled(session: AsyncSession, endpoint: WebhookEndpoint) -> int:
    """Queue `endpoint.disabled` about `endpoint` to its app's other subscribed active
    endpoints; returns how many."""
    others = (await session.exec(select(WebhookEndpoint).where(
        WebhookEndpoint.app_id == endpoint.app_id, col(WebhookEndpoint.id) != endpoint.id,
        WebhookEndpoint.status == WebhookEndpointStatus.ACTIVE))).all()
    listeners = [e for e in others if ENDPOINT_DISABLED in e.events]
    if not listeners:
        return 0
    now = utcnow()
    data = {"endpoint_id": str(endpoint.id), "url": endpoint.url,
            "reason": endpoint.disabled_reason or "", "disabled_at": rfc3339(
                endpoint.disabled_at or now)}
    CATALOGUE[ENDPOINT_DISABLED].data.model_validate(data)
    payload = {"type": ENDPOINT_DISABLED, "timestamp": rfc3339(now), "data": data}
    message_id = f"msg_{uuid.uuid4().hex}"  # one message, the same id at every endpoint
    for listener in listeners:
        session.add(WebhookDelivery(
            endpoint_id=listener.id, app_id=listener.app_id, type=ENDPOINT_DISABLED,
            message_id=message_id, payload=payload, max_attempts=max_attempts(),
            next_attempt_at=now))
    unit_of_work(session).nudge_relay()  # the dispatcher sends what is due
    return len(listeners)
