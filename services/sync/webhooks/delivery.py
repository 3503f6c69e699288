"""Delivery attempts: one ("webhooks.deliver", job id `delivery:<id>:<attempt>`) or a
batch of every due delivery (the dispatcher's path, see dispatcher.py).

Attempts are claimed in the database first (one UPDATE ... RETURNING that adds one to
the attempt count and takes a lease), checked again (endpoint active, the app may still
see the event), sent outside any transaction through the SSRF guard, and recorded after,
a batch in one transaction. arq's job timeout is final, so the HTTP call has its own
shorter timeout and every failure is retried here, with backoff, by enqueueing the next
attempt as its own job.

Two endpoint options shape the claim. A delivery with a sequence key (an ordered
endpoint's, or a recovery's) waits in its line (lines.py): parked, with no
next_attempt_at, until the one before it settles and releases it in the transaction that
records that. An endpoint with `max_rate_per_second` gives each delivery its own slot
(successive send times from Redis, one 1/rate s apart, bursts up to the rate): the ones
whose slot is later are put off to it in one statement, keep it (`rate_slot`: they go
then without taking another), and one deferred nudge wakes the dispatcher for the
earliest. Neither costs other endpoints anything but a NULL test.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Table, Text, cast, exists, func, or_
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import aliased
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.events.relay import FanOut
from services.sync.webhooks import arrays, lines, schedule
from services.sync.webhooks.announce import announce_disabled
from services.sync.webhooks.arrays import among
from services.sync.webhooks.sender import MAX_ERROR, Outcome, Sender
from services.sync.webhooks.service import set_status
from services.sync.webhooks.signing import private_key, secret_key, signed_headers
from shared import ratelimit
from shared.db.types import utcnow, uuid7
from shared.metrics import WEBHOOK_DELIVERIES, WEBHOOK_LATENCY, delivery_outcome
from shared.models import (
    DeliveryStatus,
    Event,
    SignatureScheme,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from shared.request_id import bind_request_id
from shared.runtime import Runtime
from shared.unit_of_work import UnitOfWork, unit_of_work
from shared.vault import VaultError
from shared.vault.columns import (
    WEBHOOK_PREVIOUS_SECRET,
    WEBHOOK_PREVIOUS_SIGNING_KEY,
    WEBHOOK_SECRET,
    WEBHOOK_SIGNING_KEY,
)

log = structlog.get_logger("koppel.webhooks")
SEND_TIMEOUT_S = 10.0
D = WebhookDelivery
DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[attr-defined]
ATTEMPTS: Table = WebhookAttempt.__table__  # type: ignore[attr-defined]

# The payload as the JSON text stored (not parsed into a dict per delivery: see _body).
_RETURNED = (col(D.id), col(D.endpoint_id), col(D.app_id), col(D.event_id), col(D.type),
             col(D.message_id), cast(D.payload, Text).label("payload"), col(D.attempts),
             col(D.sequence_key))
EARLIER = aliased(WebhookDelivery)
Row = Any  # a row of (id, endpoint_id, attempts)


@dataclass
class Keys:
    """What an attempt is signed with: HMAC keys (`v1`) or Ed25519 keys (`v1a`); the
    current one, and the previous one during a rotation's overlap."""

    hmac: list[bytes]
    ed25519: list[Ed25519PrivateKey]


@dataclass
class Attempt:
    """A claimed attempt, ready to send."""

    delivery_id: uuid.UUID
    attempt: int
    message_id: str
    url: str
    body: bytes
    keys: Keys
    request_id: str | None = None  # of the API request that wrote the event (for logs)
    line: lines.Line | None = None  # a later delivery may be waiting for this one
    started: datetime | None = None
    outcome: Outcome | None = None

    @property
    def result(self) -> Outcome:
        """The outcome of an attempt that was sent."""
        if self.outcome is None:
            raise RuntimeError(f"delivery {self.delivery_id} attempt {self.attempt} was not sent")
        return self.outcome


def _body(text: str) -> bytes:
    """The bytes sent for a stored payload: its JSON, compact. Computed once per distinct
    payload of a claim (an event's deliveries share one), the same bytes for each."""
    return json.dumps(json.loads(text), separators=(",", ":")).encode()


def _finished(status: DeliveryStatus, error: str | None) -> dict:
    return {"status": status, "last_error": error, "finished_at": utcnow(),
            "next_attempt_at": None}


def _keys(runtime: Runtime, endpoint: WebhookEndpoint, now: datetime) -> Keys:
    """The keys of the endpoint's scheme: the current one, and the previous one during
    an overlap."""
    box = runtime.box
    if endpoint.signature_scheme == SignatureScheme.ED25519:
        raw = [WEBHOOK_SIGNING_KEY.open(box, endpoint)]
        expires = endpoint.previous_signing_key_expires_at
        if endpoint.previous_signing_key_ciphertext and expires and expires > now:
            raw.append(WEBHOOK_PREVIOUS_SIGNING_KEY.open(box, endpoint))
        return Keys([], [private_key(r) for r in raw])
    secrets = [WEBHOOK_SECRET.open(box, endpoint).decode()]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_ciphertext and expires and expires > now:
        secrets.append(WEBHOOK_PREVIOUS_SECRET.open(box, endpoint).decode())
    return Keys([secret_key(s) for s in secrets], [])


def _its_turn():
    """A sequenced delivery waits while an earlier one of its endpoint and key is pending
    (in flight, waiting for a retry, or parked); an unsequenced one never waits. Only a
    line's released head is due, so this is one index probe for the few that are (one
    that a recovery or a redelivery put behind an older one waits here, one a line)."""
    earlier = select(EARLIER.id).where(
        EARLIER.endpoint_id == D.endpoint_id, EARLIER.sequence_key == D.sequence_key,
        EARLIER.status == DeliveryStatus.PENDING, col(EARLIER.id) < col(D.id))
    return or_(col(D.sequence_key).is_(None), ~exists(earlier))


async def _endpoints(session: AsyncSession, known: FanOut, ids: set[uuid.UUID]
                     ) -> dict[uuid.UUID, WebhookEndpoint]:
    endpoints = known.endpoints_by_id
    missing = ids - endpoints.keys()
    if missing:
        endpoints.update((e.id, e) for e in (await session.exec(
            select(WebhookEndpoint).where(col(WebhookEndpoint.id).in_(missing)))).all())
    return endpoints


async def _throttle(runtime: Runtime, session: AsyncSession, due: list[Row],
                    endpoints: dict[uuid.UUID, WebhookEndpoint]) -> list[uuid.UUID]:
    """The due deliveries that may go now. A rate-limited endpoint's take the endpoint's
    next slots; the ones whose slot is later are put off to it (one statement), holding
    it, and one deferred nudge wakes the dispatcher for the earliest slot waiting. Other
    endpoints cost nothing here (a disabled endpoint's go on to be settled)."""
    limited: dict[uuid.UUID, list] = defaultdict(list)
    go: list[uuid.UUID] = []
    seen = False
    for row in due:
        endpoint = endpoints[row.endpoint_id]
        if row.rate_slot:  # its slot has come (even if the rate was lifted meanwhile)
            seen = True
            go.append(row.id)
        elif endpoint.max_rate_per_second and endpoint.status == WebhookEndpointStatus.ACTIVE:
            seen = True
            limited[row.endpoint_id].append(row)
        else:
            go.append(row.id)
    if not seen:
        return go
    now = utcnow()
    put_off = []
    for endpoint_id, rows in limited.items():
        rows.sort(key=lambda r: r.id)
        slots = await ratelimit.reserve_slots(
            runtime.redis, f"webhook:{endpoint_id}", endpoints[endpoint_id].max_rate_per_second
            or 1, len(rows), now.timestamp())
        for row, slot in zip(rows, slots, strict=True):
            if slot <= now.timestamp():
                go.append(row.id)
            else:
                put_off.append({"id": row.id, "next_attempt_at": datetime.fromtimestamp(slot, UTC),
                                "rate_slot": True})
    if put_off:
        await session.exec(update(WebhookDelivery), params=put_off)  # by primary key
    following = (await session.exec(select(func.min(D.next_attempt_at)).where(
        col(D.rate_slot), col(D.next_attempt_at) > now))).one()
    if following is not None:
        unit_of_work(session).nudge_relay_at(following)
    return go


async def _claim(runtime: Runtime, session: AsyncSession, conditions: list, limit: int,
                 known: FanOut | None = None) -> tuple[list[Attempt], int]:
    """Start the next attempt of up to `limit` deliveries matching `conditions` whose turn
    it is, in the session's transaction; settle at once the ones that may not be sent,
    put off the ones over their endpoint's rate. `known` holds what a relay in this same
    transaction has read already (audiences, rows). Returns the attempts to send and how
    many due deliveries were looked at (each is now claimed, settled or put off)."""
    now = utcnow()
    due_stmt = (select(D.id, D.endpoint_id, D.attempts, D.rate_slot)
                .where(*conditions, _its_turn())
                .order_by(col(D.next_attempt_at)).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        due_stmt = due_stmt.with_for_update(skip_locked=True)
    # Two statements: PostgreSQL may rescan a LIMIT ... SKIP LOCKED subquery inside an
    # UPDATE's IN (...) and so claim more than `limit` rows.
    due = list((await session.exec(due_stmt)).all())
    if not due:
        return [], 0
    known = known or FanOut(session)
    endpoints = await _endpoints(session, known, {endpoint_id for _, endpoint_id, _, _ in due})
    ids = await _throttle(runtime, session, due, endpoints)
    if not ids:
        return [], len(due)
    dialect = session.get_bind().dialect.name
    claimed = (await session.exec(
        update(DELIVERIES).where(among(col(D.id), ids, dialect), *conditions)
        .values(attempts=D.attempts + 1,
                next_attempt_at=now + timedelta(seconds=schedule.ATTEMPT_LEASE_S),
                last_attempt_at=now, rate_slot=False)
        .returning(*_RETURNED)
    )).all()
    if not claimed:
        return [], len(due)
    events = known.events
    event_ids = {row.event_id for row in claimed if row.event_id is not None} - events.keys()
    if event_ids:
        events.update((e.id, e) for e in (await session.exec(
            select(Event).where(col(Event.id).in_(event_ids)))).all())
    visible = known.visibility
    keys: dict[uuid.UUID, Keys | None] = {}
    bodies: dict[str, bytes] = {}
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
                    keys[endpoint.id] = _keys(runtime, endpoint, now)
                except VaultError:
                    log.error("webhook secret does not open", endpoint_id=str(endpoint.id))
                    keys[endpoint.id] = None
            signing = keys[endpoint.id]
            if signing is None:
                settle[row.id] = _finished(DeliveryStatus.FAILED,
                                           "the endpoint's secret cannot be read")
                settle[row.id]["attempts"] = row.attempts  # as before: counted
                continue
            body = bodies.get(row.payload)
            if body is None:
                body = bodies[row.payload] = _body(row.payload)
            ready.append(Attempt(row.id, row.attempts, row.message_id, endpoint.url, body,
                                 signing, getattr(event, "request_id", None),
                                 _line(row)))
            continue
        settle[row.id].setdefault("attempts", row.attempts - 1)  # not an attempt after all
    for delivery_id, values in settle.items():
        await session.exec(update(D).where(col(D.id) == delivery_id).values(**values))
    await lines.release(session, [line for row in claimed
                                  if row.id in settle and (line := _line(row))])
    return ready, len(due)


def _line(row: Row) -> lines.Line | None:
    return None if row.sequence_key is None else (row.endpoint_id, row.sequence_key)


async def claim_one(runtime: Runtime, delivery_id: uuid.UUID, attempt: int) -> list[Attempt]:
    """Attempt `attempt` of one delivery, if it is the next one, due and its turn."""
    async with runtime.async_session() as session, session.begin():
        claimed, _ = await _claim(runtime, session, [
            col(D.id) == delivery_id, col(D.status) == DeliveryStatus.PENDING,
            col(D.attempts) == attempt - 1,
            col(D.next_attempt_at) <= utcnow() + timedelta(seconds=1)], 1)
    await UnitOfWork.detach(session).flush(runtime.redis)
    return claimed


async def claim_due(runtime: Runtime, session: AsyncSession, limit: int,
                    known: FanOut | None = None) -> tuple[list[Attempt], int]:
    """In the session's transaction: the next attempt of up to `limit` due deliveries
    (oldest due first), and how many due deliveries were looked at."""
    return await _claim(runtime, session, [
        col(D.status) == DeliveryStatus.PENDING, col(D.next_attempt_at) <= utcnow()], limit,
        known)


async def _send(sender: Sender, attempt: Attempt) -> None:
    bind_request_id(attempt.request_id)  # this task's own log context
    attempt.started = utcnow()
    headers = signed_headers(attempt.message_id, int(time.time()), attempt.body,
                             attempt.keys.hmac, attempt.keys.ed25519)
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


async def _disable(session: AsyncSession, endpoint: WebhookEndpoint, reason: str) -> None:
    """Disable the endpoint, and announce it once (`endpoint.disabled`): the row is
    locked and read again, so that two transactions disabling it at once (two attempts
    recorded by different jobs) announce it once."""
    if endpoint.status == WebhookEndpointStatus.DISABLED:
        return  # already (another attempt of this batch)
    await session.flush()
    await session.refresh(endpoint, with_for_update=True)
    if endpoint.status == WebhookEndpointStatus.DISABLED:
        return  # already (another transaction, or the app)
    set_status(endpoint, WebhookEndpointStatus.DISABLED, reason)
    await announce_disabled(session, endpoint)


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
        await _disable(session, endpoint, "the endpoint answered 410 Gone")
        return None
    if attempt.attempt >= delivery.max_attempts:
        for k, v in done.items():
            setattr(delivery, k, v)
        if attempt.attempt == schedule.max_attempts():
            await _disable(session, endpoint,
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
        await record_in(session, attempts)
    await UnitOfWork.detach(session).flush(runtime.redis)


async def record_in(session: AsyncSession, attempts: list[Attempt]) -> None:
    """In the session's transaction: write the attempts' results; the retries to enqueue
    are noted on its unit of work. The lines of sequenced attempts are locked first and
    released last (a settled head lets the next one go; one retried stays the head)."""
    if not attempts:
        return
    waiting = [a.line for a in attempts if a.line is not None]
    await lines.lock(session, waiting)
    attempts = await _unrecorded(session, attempts)
    if not attempts:
        await lines.release(session, waiting)
        return
    dialect = session.get_bind().dialect.name
    await _insert_attempts(session, dialect, attempts)
    succeeded: dict[tuple[int, int | None], list[uuid.UUID]] = defaultdict(list)
    for a in attempts:
        if a.result.succeeded:
            succeeded[(a.attempt, a.result.status_code)].append(a.delivery_id)
    for (number, code), ids in succeeded.items():
        # Only where this attempt is still the latest (it did not outlive its lease). On
        # the table: no delivery of these is loaded in the session, nothing to refresh.
        await session.exec(update(DELIVERIES).where(among(col(D.id), ids, dialect),
                                           col(D.attempts) == number)
                           .values(last_status_code=code,
                                   **_finished(DeliveryStatus.SUCCEEDED, None)))
    for a in attempts:
        if not a.result.succeeded:
            retry = await _record_failure(session, a)
            if retry is not None:
                unit_of_work(session).enqueue_delivery(*retry)
    await lines.release(session, waiting)  # the next in line may go now


async def _unrecorded(session: AsyncSession, attempts: list[Attempt]) -> list[Attempt]:
    """The attempts whose delivery still exists (kept until this transaction ends: an
    endpoint or a sandbox deleted while the send was in flight takes its deliveries
    with it) and whose result is not recorded yet (a commit whose reply was lost)."""
    A = WebhookAttempt
    dialect = session.get_bind().dialect.name
    rows = (await session.exec(
        select(D.id, A.attempt)
        .outerjoin(A, (col(A.delivery_id) == D.id)
                   & among(col(A.attempt), {a.attempt for a in attempts}, dialect,
                           integers=True))
        .where(among(col(D.id), {a.delivery_id for a in attempts}, dialect))
        .order_by(col(D.id)).with_for_update(key_share=True, of=D))).all()
    alive = {delivery_id for delivery_id, _ in rows}
    done = {(delivery_id, number) for delivery_id, number in rows if number is not None}
    kept = [a for a in attempts
            if a.delivery_id in alive and (a.delivery_id, a.attempt) not in done]
    if len(kept) < len(attempts):
        log.info("webhook results not recorded: deleted deliveries or recorded already",
                 skipped=len(attempts) - len(kept))
    return kept


async def _insert_attempts(session: AsyncSession, dialect: str, attempts: list[Attempt]
                           ) -> None:
    """Write the attempt rows, leaving an (delivery, attempt) already written alone: on
    PostgreSQL one INSERT of a column array each, elsewhere one executemany."""
    if dialect == "postgresql":
        await session.exec(arrays.INSERT_ATTEMPTS, params={  # type: ignore[call-overload]
            "id": [uuid7() for _ in attempts],
            "delivery_id": [a.delivery_id for a in attempts],
            "attempt": [a.attempt for a in attempts],
            "started_at": [a.started for a in attempts],
            "duration_ms": [a.result.duration_ms for a in attempts],
            "status_code": [a.result.status_code for a in attempts],
            "succeeded": [a.result.succeeded for a in attempts],
            "error": [a.result.error for a in attempts]})
        return
    await session.exec(sqlite_insert(ATTEMPTS).on_conflict_do_nothing(
        index_elements=["delivery_id", "attempt"]), params=[{
            "id": uuid7(), "delivery_id": a.delivery_id, "attempt": a.attempt,
            "started_at": a.started, "duration_ms": a.result.duration_ms,
            "status_code": a.result.status_code, "succeeded": a.result.succeeded,
            "error": a.result.error} for a in attempts])


async def send_all(sender: Sender, attempts: list[Attempt]) -> None:
    """Send claimed attempts concurrently; each keeps its outcome."""
    await asyncio.gather(*(_send(sender, a) for a in attempts))


async def send_and_record(runtime: Runtime, sender: Sender, attempts: list[Attempt]
                          ) -> dict[str, int]:
    """Send claimed attempts concurrently, record them, enqueue the retries."""
    await send_all(sender, attempts)
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
