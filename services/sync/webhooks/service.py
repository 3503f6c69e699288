"""Webhook endpoints of the calling app: create, change, rotate, inspect, redeliver,
recover."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col
from sqlmodel import update as update_rows
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.webhooks import lines, schemas
from services.sync.webhooks.repository import WebhookRepository
from services.sync.webhooks.schedule import max_attempts
from services.sync.webhooks.signing import jwk, new_key_pair, new_secret
from shared.db.types import utcnow
from shared.errors import Conflict, Invalid, KoppelError, NotFound
from shared.events import SUBSCRIBABLE, TEST_EVENT, rfc3339
from shared.models import (
    DeliveryStatus,
    SignatureScheme,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from shared.policy.dependency import AppCaller
from shared.ssrf import UnsafeURL
from shared.unit_of_work import unit_of_work
from shared.vault import SecretBox
from shared.vault.columns import (
    WEBHOOK_PREVIOUS_SECRET,
    WEBHOOK_PREVIOUS_SIGNING_KEY,
    WEBHOOK_SECRET,
    WEBHOOK_SIGNING_KEY,
)

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
                               secret_key_id="",
                               signature_scheme=SignatureScheme(payload.signature_scheme),
                               ordered=payload.ordered,
                               max_rate_per_second=payload.max_rate_per_second)
    secret = new_secret()
    WEBHOOK_SECRET.seal(box, endpoint, secret.encode())
    if endpoint.signature_scheme == SignatureScheme.ED25519:
        _new_signing_key(box, endpoint)
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


def _new_signing_key(box: SecretBox, endpoint: WebhookEndpoint) -> None:
    """A fresh Ed25519 key pair: the private key sealed, the public key in the clear."""
    private, public = new_key_pair()
    WEBHOOK_SIGNING_KEY.seal(box, endpoint, private)
    endpoint.public_key = public


async def update(session: AsyncSession, caller: AppCaller, endpoint_id: uuid.UUID,
                 payload: schemas.EndpointUpdate, *, check: UrlCheck,
                 box: SecretBox | None = None) -> WebhookEndpoint:
    endpoint = await get(session, caller, endpoint_id)
    fields = payload.model_fields_set
    if "signature_scheme" in fields and payload.signature_scheme is not None:
        endpoint.signature_scheme = SignatureScheme(payload.signature_scheme)
        if endpoint.signature_scheme == SignatureScheme.ED25519 and not endpoint.public_key:
            if box is None:  # pragma: no cover - the PATCH route passes the vault
                raise RuntimeError("a new signing key needs the vault")
            _new_signing_key(box, endpoint)
    if "ordered" in fields and payload.ordered is not None:
        endpoint.ordered = payload.ordered
    if "max_rate_per_second" in fields:
        endpoint.max_rate_per_second = payload.max_rate_per_second
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


async def rotate_key(session: AsyncSession, caller: AppCaller, endpoint_id: uuid.UUID,
                     payload: schemas.RotateSecret, *, box: SecretBox) -> schemas.KeyOut:
    """A new Ed25519 key pair; the old private key keeps signing too for
    `overlap_seconds`. Only the public keys are ever shown."""
    endpoint = await get(session, caller, endpoint_id)
    if endpoint.signature_scheme != SignatureScheme.ED25519 or not endpoint.public_key:
        raise Conflict("this endpoint signs with HMAC: set signature_scheme to ed25519 "
                       "to give it a key pair (rotate-secret rotates its secret)")
    now = utcnow()
    if payload.overlap_seconds > 0:
        WEBHOOK_PREVIOUS_SIGNING_KEY.seal(box, endpoint, WEBHOOK_SIGNING_KEY.open(box, endpoint))
        endpoint.previous_public_key = endpoint.public_key
        endpoint.previous_signing_key_expires_at = now + timedelta(
            seconds=payload.overlap_seconds)
    else:
        endpoint.previous_signing_key_ciphertext = None
        endpoint.previous_signing_key_key_id = endpoint.previous_public_key = None
        endpoint.previous_signing_key_expires_at = None
    _new_signing_key(box, endpoint)
    endpoint.updated_at = now
    session.add(endpoint)
    await session.flush()
    return schemas.KeyOut(public_key=endpoint.public_key or "",
                          previous_public_key=endpoint.previous_public_key,
                          previous_public_key_expires_at=endpoint.previous_signing_key_expires_at)


async def key_set(session: AsyncSession, caller: AppCaller) -> schemas.KeySet:
    """The public keys that verify the app's `v1a` signatures: each ed25519 endpoint's
    current key, and its previous one while it still signs."""
    now = utcnow()
    endpoints = await WebhookRepository(session).endpoints(caller.app.id, None,
                                                           MAX_ENDPOINTS_PER_APP)
    keys: list[schemas.PublicKey] = []
    for e in endpoints:
        if e.signature_scheme != SignatureScheme.ED25519 or not e.public_key:
            continue
        keys.append(schemas.PublicKey(endpoint_id=e.id, public_key=e.public_key,
                                      status="current", expires_at=None,
                                      jwk=jwk(e.public_key)))
        expires = e.previous_signing_key_expires_at
        if e.previous_public_key and expires and expires > now:
            keys.append(schemas.PublicKey(endpoint_id=e.id, public_key=e.previous_public_key,
                                          status="previous", expires_at=expires,
                                          jwk=jwk(e.previous_public_key)))
    return schemas.KeySet(keys=keys)


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
    # One of a line waits its turn there (parked, released when it is the head).
    delivery.next_attempt_at = None if delivery.sequence_key else utcnow()
    delivery.finished_at = None
    session.add(delivery)
    await session.flush()
    if delivery.sequence_key:
        await lines.release(session, [(delivery.endpoint_id, delivery.sequence_key)])
        await session.refresh(delivery)
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


async def recover(session: AsyncSession, caller: AppCaller, endpoint_id: uuid.UUID,
                  since: datetime) -> int:
    """Queue again every failed delivery of the endpoint created since `since`, one more
    attempt each, in their original order: one at a time (they wait in one line, parked
    but its head; an ordered endpoint's keep their customer's line). Dropped deliveries
    (the app may no longer see their event) stay dropped."""
    if since.tzinfo is None:
        raise Invalid("since needs a time zone (RFC 3339, for example 2026-12-01T00:00:00Z)")
    endpoint = await get(session, caller, endpoint_id, for_update=True)
    if endpoint.status != WebhookEndpointStatus.ACTIVE:
        raise Conflict("the endpoint is disabled: enable it first, then recover")
    rows = WebhookDelivery
    line = f"recover:{uuid.uuid4().hex}"
    recovered = (await session.exec(
        update_rows(rows).where(col(rows.endpoint_id) == endpoint.id,
                           col(rows.status) == DeliveryStatus.FAILED,
                           col(rows.created_at) >= since)
        .values(status=DeliveryStatus.PENDING, max_attempts=rows.attempts + 1,
                next_attempt_at=None, finished_at=None,
                sequence_key=func.coalesce(rows.sequence_key, line))
        .returning(col(rows.sequence_key)))).all()
    # Each line's head goes now (and nudges the dispatcher); the rest wait their turn.
    await lines.release(session, {(endpoint.id, key) for key, in recovered})
    return len(recovered)
