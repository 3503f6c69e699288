"""Delivery attempts: one ("webhooks.deliver", job id `delivery:<id>:<attempt>`) or a
batch of every due delivery (the dispatcher's path, see dispatcher.py).

Attempts are claimed in the database first (one UPDATE ... RETURNING that adds one to
the attempt count and takes a lease), checked again (endpoint active, the app may still
see the event), sent outside any transaction through the SSRF guard, and recorded after,
a batch in one transaction. arq's job timeout is final, so the HTTP call has its own
shorter timeout and every failure is retried here, with backoff, by enqueueing the next
attempt as its own job.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import insert
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.events.relay import FanOut
from services.sync.webhooks import schedule
from services.sync.webhooks.sender import MAX_ERROR, Outcome, Sender
from services.sync.webhooks.service import set_status
from services.sync.webhooks.signing import secret_key, signed_headers
from shared.db.types import utcnow, uuid7
from shared.metrics import WEBHOOK_DELIVERIES, WEBHOOK_LATENCY, delivery_outcome
from shared.models import (
    DeliveryStatus,
    Event,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from shared.request_id import bind_request_id
from shared.runtime import Runtime
from shared.unit_of_work import UnitOfWork, unit_of_work
from shared.vault import VaultError
from shared.vault.columns import WEBHOOK_PREVIOUS_SECRET, WEBHOOK_SECRET

log = structlog.get_logger("koppel.webhooks")
SEND_TIMEOUT_S = 10.0
D = WebhookDelivery

_RETURNED = (col(D.id), col(D.endpoint_id), col(D.app_id), col(D.event_id), col(D.type),
             col(D.message_id), col(D.payload), col(D.attempts))


@dataclass
class Attempt:
    """A claimed attempt, ready to send."""

    delivery_id: uuid.UUID
    attempt: int
    message_id: str
    url: str
    body: bytes
    keys: list[bytes]
    request_id: str | None = None  # of the API request that wrote the event (for logs)
    started: datetime | None = None
    outcome: Outcome | None = None

    @property
    def result(self) -> Outcome:
        """The outcome of an attempt that was sent."""
        if self.outcome is None:
            raise RuntimeError(f"delivery {self.delivery_id} attempt {self.attempt} was not sent")
        return self.outcome


def _finished(status: DeliveryStatus, error: str | None) -> dict:
    return {"status": status, "last_error": error, "finished_at": utcnow(),
            "next_attempt_at": None}


async def _keys(runtime: Runtime, endpoint: WebhookEndpoint, now: datetime) -> list[bytes]:
    """The HMAC keys to sign with: the secret, and the previous one during an overlap."""
    secrets = [WEBHOOK_SECRET.open(runtime.box, endpoint).decode()]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_ciphertext and expires and expires > now:
        secrets.append(WEBHOOK_PREVIOUS_SECRET.open(runtime.box, endpoint).decode())
    return [secret_key(s) for s in secrets]


async def _claim(runtime: Runtime, session: AsyncSession, conditions: list, limit: int,
                 known: FanOut | None = None) -> list[Attempt]:
    """Start the next attempt of up to `limit` deliveries matching `conditions`, in the
    session's transaction; settle at once the ones that may not be sent. `known` holds
    what a relay in this same transaction has read already (audiences, rows)."""
    now = utcnow()
    due = select(D.id).where(*conditions).order_by(col(D.next_attempt_at)).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    # Two statements: PostgreSQL may rescan a LIMIT ... SKIP LOCKED subquery inside an
    # UPDATE's IN (...) and so claim more than `limit` rows.
    ids = list((await session.exec(due)).all())
    if not ids:
        return []
    claimed = (await session.exec(
        update(D).where(col(D.id).in_(ids), *conditions)
        .values(attempts=D.attempts + 1,
                next_attempt_at=now + timedelta(seconds=schedule.ATTEMPT_LEASE_S),
                last_attempt_at=now)
        .returning(*_RETURNED)
    )).all()
    if not claimed:
        return []
    known = known or FanOut(session)
    endpoints, events = known.endpoints_by_id, known.events
    endpoint_ids = {row.endpoint_id for row in claimed} - endpoints.keys()
    if endpoint_ids:
        endpoints.update((e.id, e) for e in (await session.exec(
            select(WebhookEndpoint).where(col(WebhookEndpoint.id).in_(endpoint_ids)))).all())
    event_ids = {row.event_id for row in claimed if row.event_id is not None} - events.keys()
    if event_ids:
        events.update((e.id, e) for e in (await session.exec(
            select(Event).where(col(Event.id).in_(event_ids)))).all())
    visible = known.visibility
    keys: dict[uuid.UUID, list[bytes] | None] = {}
    ready: list[Attempt] = []
    settle: dict[uuid.UUID, dict] = {}
    for row in claimed:
        endpoint = endpoints[row.endpoint_id]
        event = events.get(row.event_id)
        if endpoint.status != WebhookEndpointStatus.ACTIVE:
            settle[row.id] = _finished(DeliveryStatus.FAILED, "the endpoint is disabled")
        elif event is not None and not await visible(event, row.app_id):
            settle[row.id] = _finished(DeliveryStatus.DROPPED,
                                       "the app may no longer see this event")
        else:
            if endpoint.id not in keys:
                try:
                    keys[endpoint.id] = await _keys(runtime, endpoint, now)
                except VaultError:
                    log.error("webhook secret does not open", endpoint_id=str(endpoint.id))
                    keys[endpoint.id] = None
            signing = keys[endpoint.id]
            if signing is None:
                settle[row.id] = _finished(DeliveryStatus.FAILED,
                                           "the endpoint's secret cannot be read")
                settle[row.id]["attempts"] = row.attempts  # as before: counted
                continue
            body = json.dumps(row.payload, separators=(",", ":")).encode()
            ready.append(Attempt(row.id, row.attempts, row.message_id, endpoint.url, body,
                                 signing, getattr(event, "request_id", None)))
            continue
        settle[row.id].setdefault("attempts", row.attempts - 1)  # not an attempt after all
    for delivery_id, values in settle.items():
        await session.exec(update(D).where(col(D.id) == delivery_id).values(**values))
    return ready


async def claim_one(runtime: Runtime, delivery_id: uuid.UUID, attempt: int) -> list[Attempt]:
    """Attempt `attempt` of one delivery, if it is the next one and due."""
    async with runtime.async_session() as session, session.begin():
        return await _claim(runtime, session, [
            col(D.id) == delivery_id, col(D.status) == DeliveryStatus.PENDING,
            col(D.attempts) == attempt - 1,
            col(D.next_attempt_at) <= utcnow() + timedelta(seconds=1)], 1)


async def claim_due(runtime: Runtime, session: AsyncSession, limit: int,
                    known: FanOut | None = None) -> list[Attempt]:
    """In the session's transaction: the next attempt of up to `limit` due deliveries
    (oldest due first)."""
    return await _claim(runtime, session, [
        col(D.status) == DeliveryStatus.PENDING, col(D.next_attempt_at) <= utcnow()], limit,
        known)


async def _send(sender: Sender, attempt: Attempt) -> None:
    bind_request_id(attempt.request_id)  # this task's own log context
    attempt.started = utcnow()
    headers = signed_headers(attempt.message_id, int(time.time()), attempt.body, attempt.keys)
    attempt.outcome = await sender.post(attempt.url, attempt.body, headers, SEND_TIMEOUT_S)
    outcome = attempt.outcome
    WEBHOOK_DELIVERIES.labels(
        delivery_outcome(outcome.succeeded, outcome.status_code, outcome.gone)).inc()
    WEBHOOK_LATENCY.observe(outcome.duration_ms / 1000)
    if not outcome.succeeded:
        log.info("webhook delivery attempt failed", delivery_id=str(attempt.delivery_id),
                 attempt=attempt.attempt, status_code=outcome.status_code, error=outcome.error)
    else:  # debug: a line per success costs ~15 us of CPU at info
        log.debug("webhook delivered", delivery_id=str(attempt.delivery_id),
                  attempt=attempt.attempt, status_code=outcome.status_code)


async def _record_failure(session: AsyncSession, attempt: Attempt
                          ) -> tuple[uuid.UUID, int, datetime] | None:
    """Settle or reschedule a failed attempt; returns the next attempt to enqueue."""
    outcome = attempt.result
    delivery = await session.get(WebhookDelivery, attempt.delivery_id)
    if delivery is None or delivery.attempts != attempt.attempt:
        return None  # a later attempt took over (this one outlived its lease)
    delivery.last_status_code = outcome.status_code
    endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None:  # deleting an endpoint deletes its deliveries
        raise RuntimeError(f"the endpoint of delivery {delivery.id} is missing")
    done = _finished(DeliveryStatus.FAILED, outcome.error)
    if outcome.gone:
        for k, v in done.items():
            setattr(delivery, k, v)
        set_status(endpoint, WebhookEndpointStatus.DISABLED, "the endpoint answered 410 Gone")
        return None
    if attempt.attempt >= delivery.max_attempts:
        for k, v in done.items():
            setattr(delivery, k, v)
        if attempt.attempt == schedule.max_attempts():
            set_status(endpoint, WebhookEndpointStatus.DISABLED,
                       f"deliveries failed for a day ({attempt.attempt} attempts); "
                       f"last error: {outcome.error}"[:MAX_ERROR])
        return None
    delivery.last_error = outcome.error
    delivery.next_attempt_at = schedule.next_attempt_at(utcnow(), attempt.attempt,
                                                        outcome.retry_after)
    return delivery.id, attempt.attempt + 1, delivery.next_attempt_at


async def record(runtime: Runtime, attempts: list[Attempt]) -> None:
    """Write the attempts' results in one transaction, then enqueue the retries."""
    async with runtime.async_session() as session, session.begin():
        await session.exec(insert(WebhookAttempt), params=[{
            "id": uuid7(), "delivery_id": a.delivery_id, "attempt": a.attempt,
            "started_at": a.started, "duration_ms": a.result.duration_ms,
            "status_code": a.result.status_code, "succeeded": a.result.succeeded,
            "error": a.result.error} for a in attempts])
        succeeded: dict[tuple[int, int | None], list[uuid.UUID]] = defaultdict(list)
        for a in attempts:
            if a.result.succeeded:
                succeeded[(a.attempt, a.result.status_code)].append(a.delivery_id)
        for (number, code), ids in succeeded.items():
            # Only where this attempt is still the latest (it did not outlive its lease).
            await session.exec(update(D).where(col(D.id).in_(ids), col(D.attempts) == number)
                               .values(last_status_code=code,
                                       **_finished(DeliveryStatus.SUCCEEDED, None)))
        for a in attempts:
            if not a.result.succeeded:
                retry = await _record_failure(session, a)
                if retry is not None:
                    unit_of_work(session).enqueue_delivery(*retry)
    await UnitOfWork.detach(session).flush(runtime.redis)


async def send_and_record(runtime: Runtime, sender: Sender, attempts: list[Attempt]
                          ) -> dict[str, int]:
    """Send claimed attempts concurrently, record them, enqueue the retries."""
    await asyncio.gather(*(_send(sender, a) for a in attempts))
    await record(runtime, attempts)
    ok = sum(a.result.succeeded for a in attempts)
    return {"sent": len(attempts), "succeeded": ok, "failed": len(attempts) - ok}


async def deliver(runtime: Runtime, delivery_id: uuid.UUID, attempt: int, *,
                  sender: Sender) -> str:
    """Run attempt `attempt` of a delivery; returns what happened (for the job log)."""
    claimed = await claim_one(runtime, delivery_id, attempt)
    if not claimed:
        return "skipped"
    bind_request_id(claimed[0].request_id)
    await send_and_record(runtime, sender, claimed)
    outcome = claimed[0].result
    return "succeeded" if outcome.succeeded else f"failed: {outcome.error}"
