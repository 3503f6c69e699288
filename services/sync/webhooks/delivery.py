"""One delivery attempt ("webhooks.deliver", job id `delivery:<id>:<attempt>`).

The attempt is claimed in the database first (a compare-and-swap on the attempt count,
with a lease), sent outside any transaction through the SSRF guard, and recorded after.
arq's job timeout is final, so the HTTP call has its own shorter timeout and every
failure is retried here, with backoff, by enqueueing the next attempt.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, timedelta
from email.utils import parsedate_to_datetime

import aiohttp
import structlog
from sqlmodel import col, update

from services.sync.events.audience import still_visible
from services.sync.events.queue import enqueue_deliveries
from services.sync.webhooks import schedule
from services.sync.webhooks.service import set_status
from services.sync.webhooks.signing import webhook_headers
from shared import ssrf
from shared.db.types import utcnow
from shared.metrics import WEBHOOK_DELIVERIES, WEBHOOK_LATENCY, delivery_outcome
from shared.models import (
    DeliveryStatus,
    Event,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from shared.runtime import Runtime
from shared.vault import VaultError
from shared.vault.columns import WEBHOOK_PREVIOUS_SECRET, WEBHOOK_SECRET

log = structlog.get_logger("koppel.webhooks")
SEND_TIMEOUT_S = 10.0
MAX_ERROR = 1000


@dataclass
class Outcome:
    succeeded: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    gone: bool = False
    duration_ms: int = 0


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - utcnow()).total_seconds())


async def send(url: str, message_id: str, payload: dict, secrets: list[str], *,
               allow_loopback: bool, resolver: ssrf.Resolver | None = None) -> Outcome:
    """POST the signed message; never raises for anything the receiver or network does."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = webhook_headers(message_id, int(time.time()), body, secrets)
    started = time.monotonic()
    try:
        response = await ssrf.request("POST", url, allow_loopback=allow_loopback,
                                      resolver=resolver, timeout=SEND_TIMEOUT_S, data=body,
                                      headers=headers, max_body=1024)
        outcome = Outcome(200 <= response.status < 300, response.status)
        if 300 <= response.status < 400:
            outcome.error = f"answered {response.status}: redirects are not followed"
        elif response.status == 410:
            outcome.gone, outcome.error = True, "answered 410 Gone"
        elif not outcome.succeeded:
            outcome.error = f"answered {response.status}"
            outcome.retry_after = _retry_after(response.headers.get("Retry-After"))
    except ssrf.UnsafeURL as exc:
        outcome = Outcome(False, error=f"refused by the SSRF guard: {exc}")
    except TimeoutError:
        outcome = Outcome(False, error=f"timed out after {SEND_TIMEOUT_S:g} s")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        outcome = Outcome(False, error=f"connection failed: {type(exc).__name__}: {exc}")
    outcome.duration_ms = int((time.monotonic() - started) * 1000)
    if outcome.error:
        outcome.error = outcome.error[:MAX_ERROR]
    return outcome


def _finish(delivery: WebhookDelivery, status: DeliveryStatus, error: str | None) -> None:
    delivery.status, delivery.last_error = status, error
    delivery.finished_at, delivery.next_attempt_at = utcnow(), None


async def _claim(runtime: Runtime, delivery_id: uuid.UUID, attempt: int
                 ) -> tuple[WebhookDelivery, WebhookEndpoint, list[str]] | None:
    """Start attempt `attempt` if it is the next one and due; None if not (or dropped)."""
    now = utcnow()
    async with runtime.async_session() as session, session.begin():
        lease = now + timedelta(seconds=schedule.ATTEMPT_LEASE_S)
        claimed = await session.exec(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id) == delivery_id,
                   col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                   col(WebhookDelivery.attempts) == attempt - 1,
                   col(WebhookDelivery.next_attempt_at) <= now + timedelta(seconds=1))
            .values(attempts=attempt, next_attempt_at=lease, last_attempt_at=now)
        )
        if claimed.rowcount != 1:
            return None
        delivery = await session.get(WebhookDelivery, delivery_id)
        endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
        if endpoint.status != WebhookEndpointStatus.ACTIVE:
            _finish(delivery, DeliveryStatus.FAILED, "the endpoint is disabled")
            delivery.attempts = attempt - 1
            return None
        event = await session.get(Event, delivery.event_id) if delivery.event_id else None
        if event is not None and not await still_visible(session, event, delivery.app_id):
            _finish(delivery, DeliveryStatus.DROPPED, "the app may no longer see this event")
            delivery.attempts = attempt - 1
            return None
        try:
            secrets = [WEBHOOK_SECRET.open(runtime.box, endpoint).decode()]
            expires = endpoint.previous_secret_expires_at
            if endpoint.previous_secret_ciphertext and expires and expires > now:
                secrets.append(WEBHOOK_PREVIOUS_SECRET.open(runtime.box, endpoint).decode())
        except VaultError:
            log.error("webhook secret does not open", endpoint_id=str(endpoint.id))
            _finish(delivery, DeliveryStatus.FAILED, "the endpoint's secret cannot be read")
            return None
        return delivery, endpoint, secrets


async def _record(runtime: Runtime, delivery_id: uuid.UUID, attempt: int, outcome: Outcome,
                  started) -> tuple[uuid.UUID, int, object] | None:
    """Write the attempt's result; returns the next attempt to enqueue, if any."""
    async with runtime.async_session() as session, session.begin():
        session.add(WebhookAttempt(
            delivery_id=delivery_id, attempt=attempt, started_at=started,
            duration_ms=outcome.duration_ms, status_code=outcome.status_code,
            succeeded=outcome.succeeded, error=outcome.error,
        ))
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.attempts != attempt:
            return None  # a later attempt took over (this one outlived its lease)
        delivery.last_status_code = outcome.status_code
        if outcome.succeeded:
            _finish(delivery, DeliveryStatus.SUCCEEDED, None)
            return None
        endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
        if outcome.gone:
            _finish(delivery, DeliveryStatus.FAILED, outcome.error)
            set_status(endpoint, WebhookEndpointStatus.DISABLED,
                       "the endpoint answered 410 Gone")
            return None
        if attempt >= delivery.max_attempts:
            _finish(delivery, DeliveryStatus.FAILED, outcome.error)
            if attempt == schedule.max_attempts():
                set_status(endpoint, WebhookEndpointStatus.DISABLED,
                           f"deliveries failed for a day ({attempt} attempts); "
                           f"last error: {outcome.error}"[:MAX_ERROR])
            return None
        delivery.last_error = outcome.error
        delivery.next_attempt_at = schedule.next_attempt_at(utcnow(), attempt,
                                                            outcome.retry_after)
        return delivery.id, attempt + 1, delivery.next_attempt_at


async def deliver(runtime: Runtime, delivery_id: uuid.UUID, attempt: int, *,
                  resolver: ssrf.Resolver | None = None) -> str:
    """Run attempt `attempt` of a delivery; returns what happened (for the job log)."""
    claimed = await _claim(runtime, delivery_id, attempt)
    if claimed is None:
        return "skipped"
    delivery, endpoint, secrets = claimed
    started = utcnow()
    outcome = await send(endpoint.url, delivery.message_id, delivery.payload, secrets,
                         allow_loopback=runtime.settings.webhooks_allow_loopback,
                         resolver=resolver)
    WEBHOOK_DELIVERIES.labels(
        delivery_outcome(outcome.succeeded, outcome.status_code, outcome.gone)).inc()
    WEBHOOK_LATENCY.observe(outcome.duration_ms / 1000)
    retry = await _record(runtime, delivery_id, attempt, outcome, started)
    if retry is not None:
        await enqueue_deliveries(runtime.redis, [retry])
    return "succeeded" if outcome.succeeded else f"failed: {outcome.error}"
