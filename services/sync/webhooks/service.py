"""Webhook endpoints of the calling app: create, change, rotate, inspect, redeliver."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.webhooks import schemas
from services.sync.webhooks.repository import WebhookRepository
from services.sync.webhooks.schedule import max_attempts
from services.sync.webhooks.signing import new_secret
from shared.db.types import utcnow
from shared.errors import Conflict, Invalid, KoppelError, NotFound
from shared.events import SUBSCRIBABLE, TEST_EVENT, rfc3339
from shared.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from shared.policy.dependency import AppCaller
from shared.ssrf import UnsafeURL
from shared.unit_of_work import unit_of_work
from shared.vault import SecretBox
from shared.vault.columns import WEBHOOK_PREVIOUS_SECRET, WEBHOOK_SECRET

UrlCheck = Callable[[str], Awaitable[object]]
MAX_ENDPOINTS_PER_APP = 20


class InvalidWebhookUrl(KoppelError):
    status, slug, title = 422, "invalid-webhook-url", "Webhook URL refused"


def _events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - SUBSCRIBABLE)
    if unknown:
        raise Invalid(f"unknown event types: {', '.join(unknown)}", unknown_events=unknown)
    return list(dict.fromkeys(events))


async def _url(check: UrlCheck, url: str) -> str:
    try:
        await check(url)
    except UnsafeURL as exc:
        raise InvalidWebhookUrl(str(exc)) from None
    return url


def out(endpoint: WebhookEndpoint) -> schemas.EndpointOut:
    return schemas.EndpointOut.model_validate(endpoint, from_attributes=True)


async def create(session: AsyncSession, caller: AppCaller, payload: schemas.EndpointCreate,
                 *, box: SecretBox, check: UrlCheck) -> schemas.EndpointCreated:
    events = _events(payload.events)
    url = await _url(check, payload.url)
    if await WebhookRepository(session).count(caller.app.id) >= MAX_ENDPOINTS_PER_APP:
        raise Conflict(f"an app has at most {MAX_ENDPOINTS_PER_APP} webhook endpoints",
                       limit=MAX_ENDPOINTS_PER_APP)
    endpoint = WebhookEndpoint(app_id=caller.app.id, url=url, events=events,
                               description=payload.description, secret_ciphertext=b"",
                               secret_key_id="")
    secret = new_secret()
    WEBHOOK_SECRET.seal(box, endpoint, secret.encode())
    session.add(endpoint)
    await session.flush()
    return schemas.EndpointCreated(**out(endpoint).model_dump(), secret=secret)


async def list_endpoints(session: AsyncSession, caller: AppCaller, after: uuid.UUID | None,
                         limit: int) -> list[WebhookEndpoint]:
    return await WebhookRepository(session).endpoints(caller.app.id, after, limit)


async def get(session: AsyncSession, caller: AppCaller, endpoint_id: uuid.UUID, *,
              for_update: bool = False) -> WebhookEndpoint:
    endpoint = await WebhookRepository(session).endpoint(caller.app.id, endpoint_id,
                                                         for_update=for_update)
    if endpoint is None:
        raise NotFound("no such webhook endpoint")
    return endpoint


async def update(session: AsyncSession, caller: AppCaller, endpoint_id: uuid.UUID,
                 payload: schemas.EndpointUpdate, *, check: UrlCheck) -> WebhookEndpoint:
    endpoint = await get(session, caller, endpoint_id)
    fields = payload.model_fields_set
    if "url" in fields and payload.url is not None:
        endpoint.url = await _url(check, payload.url)
    if "events" in fields and payload.events is not None:
        endpoint.events = _events(payload.events)
    if "description" in fields:
        endpoint.description = payload.description
    if "status" in fields and payload.status is not None:
        set_status(endpoint, WebhookEndpointStatus(payload.status), "disabled by the app")
    endpoint.updated_at = utcnow()
    session.add(endpoint)
    await session.flush()
    return endpoint


def set_status(endpoint: WebhookEndpoint, status: WebhookEndpointStatus, reason: str) -> None:
    if status == endpoint.status:
        return
    endpoint.status = status
    disabled = status == WebhookEndpointStatus.DISABLED
    endpoint.disabled_reason = reason if disabled else None
    endpoint.disabled_at = utcnow() if disabled else None


async def delete(session: AsyncSession, caller: AppCaller, endpoint_id: uuid.UUID) -> None:
    endpoint = await get(session, caller, endpoint_id)
    await session.delete(endpoint)
    await session.flush()


async def rotate_secret(session: AsyncSession, caller: AppCaller, endpoint_id: uuid.UUID,
                        payload: schemas.RotateSecret, *, box: SecretBox) -> schemas.SecretOut:
    """A new secret; the old one keeps signing too for `overlap_seconds`."""
    endpoint = await get(session, caller, endpoint_id)
    now = utcnow()
    if payload.overlap_seconds > 0:
        WEBHOOK_PREVIOUS_SECRET.seal(box, endpoint, WEBHOOK_SECRET.open(box, endpoint))
        endpoint.previous_secret_expires_at = now + timedelta(seconds=payload.overlap_seconds)
    else:
        endpoint.previous_secret_ciphertext = endpoint.previous_secret_key_id = None
        endpoint.previous_secret_expires_at = None
    secret = new_secret()
    WEBHOOK_SECRET.seal(box, endpoint, secret.encode())
    endpoint.updated_at = now
    session.add(endpoint)
    await session.flush()
    return schemas.SecretOut(secret=secret,
                             previous_secret_expires_at=endpoint.previous_secret_expires_at)


async def deliveries(session: AsyncSession, caller: AppCaller, endpoint_id: uuid.UUID,
                     before: uuid.UUID | None, limit: int) -> list[schemas.DeliveryOut]:
    await get(session, caller, endpoint_id)
    repo = WebhookRepository(session)
    rows = await repo.deliveries(endpoint_id, before, limit)
    attempts = await repo.attempts([row.id for row in rows])
    return [
        schemas.DeliveryOut(
            **{k: getattr(row, k) for k in schemas.DeliveryOut.model_fields if k != "attempt_log"},
            attempt_log=[
                schemas.AttemptOut(attempt=a.attempt, started_at=a.started_at,
                                   latency_ms=a.duration_ms, status_code=a.status_code,
                                   succeeded=a.succeeded, error=a.error)
                for a in attempts.get(row.id, [])
            ],
        )
        for row in rows
    ]


async def redeliver(session: AsyncSession, caller: AppCaller, endpoint_id: uuid.UUID,
                    delivery_id: uuid.UUID) -> WebhookDelivery:
    """One more attempt of a delivery, now (also after it succeeded or failed)."""
    await get(session, caller, endpoint_id)
    delivery = await WebhookRepository(session).delivery(endpoint_id, delivery_id)
    if delivery is None:
        raise NotFound("no such delivery")
    if delivery.status == DeliveryStatus.DROPPED:
        raise Invalid("this delivery was dropped: the app may no longer see its event")
    delivery.status = DeliveryStatus.PENDING
    delivery.max_attempts = max(delivery.max_attempts, delivery.attempts + 1)
    delivery.next_attempt_at = utcnow()
    delivery.finished_at = None
    session.add(delivery)
    await session.flush()
    unit_of_work(session).enqueue_delivery(delivery.id, delivery.attempts + 1)
    return delivery


async def send_test(session: AsyncSession, caller: AppCaller, endpoint_id: uuid.UUID
                    ) -> WebhookDelivery:
    """Queue a `webhook.test` message to the endpoint."""
    endpoint = await get(session, caller, endpoint_id)
    now = utcnow()
    message_id = f"msg_{uuid.uuid4().hex}"
    delivery = WebhookDelivery(
        endpoint_id=endpoint.id, app_id=caller.app.id, type=TEST_EVENT, message_id=message_id,
        payload={"type": TEST_EVENT, "timestamp": rfc3339(now),
                 "data": {"endpoint_id": str(endpoint.id)}},
        max_attempts=max_attempts(), next_attempt_at=now,
    )
    session.add(delivery)
    await session.flush()
    unit_of_work(session).enqueue_delivery(delivery.id, 1)
    return delivery
