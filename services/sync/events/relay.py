"""The outbox relay ("events.relay"): fans unrelayed events out to one delivery per
event and endpoint of every app that may see them, and marks them relayed, in one
transaction per bounded batch. The worker's dispatcher runs it when nudged and then sends
what is due; the sweeper ("webhooks.sweep") nudges it every few seconds, so nothing is
lost when a process dies or Redis is flushed."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import structlog
from sqlalchemy import JSON, Table, Text, bindparam, cast, func, insert
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.events.audience import Visibility
from services.sync.webhooks import arrays, lines
from services.sync.webhooks.schedule import max_attempts
from shared.db.types import utcnow, uuid7
from shared.events import rfc3339
from shared.jobs import nudge
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
BATCH = 200  # events per transaction
DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[attr-defined]


def message(event: Event) -> dict:
    """The webhook body of an event."""
    return {"type": event.type, "timestamp": rfc3339(event.created_at), "data": event.data}


def message_text(event: Event) -> str:
    """The webhook body of an event as compact JSON text: written once per event and
    stored as it is for each of its deliveries (the claim sends it as these bytes)."""
    return json.dumps(message(event), separators=(",", ":"))


def _insert_deliveries(dialect: str, now: datetime):
    """The INSERT of a batch's deliveries (one executemany, on the table: a parked row's
    None is stored as NULL rather than replaced by the column's default). The payload
    comes as JSON text, serialized once per event, and the values every new delivery
    shares are bound once, not per row."""
    text = bindparam("payload", type_=Text)
    return insert(DELIVERIES).values(
        # PostgreSQL's json keeps the text as given; SQLite stores text.
        payload=cast(text, JSON) if dialect == "postgresql" else text,
        status=DeliveryStatus.PENDING, attempts=0, max_attempts=max_attempts(),
        created_at=now, rate_slot=False)


def sequence_key(event: Event) -> str:
    """The line an ordered endpoint's deliveries of `event` wait in: its customer (the
    debtor a connection is for; every event an app receives through a connection
    carries it)."""
    return str(event.debtor_id or event.environment_id)


class FanOut:
    """The deliveries of a batch of events, with each audience and each set of endpoints
    looked up once per batch."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.visibility = Visibility(session)
        self.events: dict[uuid.UUID, Event] = {}
        self.endpoints_by_id: dict[uuid.UUID, WebhookEndpoint] = {}
        self._endpoints: dict[frozenset, list[WebhookEndpoint]] = {}

    async def endpoints(self, apps: frozenset) -> list[WebhookEndpoint]:
        if apps not in self._endpoints:
            stmt = select(WebhookEndpoint).where(
                col(WebhookEndpoint.app_id).in_(apps),
                WebhookEndpoint.status == WebhookEndpointStatus.ACTIVE,
            )
            self._endpoints[apps] = list((await self.session.exec(stmt)).all())
            self.endpoints_by_id.update((e.id, e) for e in self._endpoints[apps])
        return self._endpoints[apps]

    async def rows(self, event: Event, now: datetime) -> list[dict]:
        apps = frozenset(await self.visibility.audience(event))
        if not apps:
            return []
        # One body text and one message id per event, the same objects in every row.
        body, message_id, kind = message_text(event), f"msg_{event.id.hex}", event.type
        return [
            {"id": uuid7(), "endpoint_id": endpoint.id, "app_id": endpoint.app_id,
             "event_id": event.id, "type": kind, "message_id": message_id, "payload": body,
             # An ordered endpoint's wait in their line, parked until released.
             "next_attempt_at": None if endpoint.ordered else now,
             "sequence_key": sequence_key(event) if endpoint.ordered else None}
            for endpoint in await self.endpoints(apps) if kind in endpoint.events
        ]


async def _insert(session: AsyncSession, rows: list[dict], now: datetime) -> None:
    """Write a batch's deliveries: on PostgreSQL one INSERT of arrays (each event's id,
    type, message id and body once, however many endpoints receive it), elsewhere one
    executemany."""
    dialect = session.get_bind().dialect.name
    if dialect != "postgresql":
        await session.exec(_insert_deliveries(dialect, now), params=rows)
        return
    events: dict[uuid.UUID, int] = {}
    event_columns: tuple[list, list, list, list] = ([], [], [], [])
    for row in rows:
        if row["event_id"] not in events:
            events[row["event_id"]] = len(events) + 1  # unnest's ordinality counts from 1
            for column, key in zip(event_columns, ("event_id", "type", "message_id",
                                                   "payload"), strict=True):
                column.append(row[key])
    event_id, kind, message_id, payload = event_columns
    await session.exec(arrays.INSERT_DELIVERIES, params={  # type: ignore[call-overload]
        "id": [r["id"] for r in rows], "endpoint_id": [r["endpoint_id"] for r in rows],
        "app_id": [r["app_id"] for r in rows], "event": [events[r["event_id"]] for r in rows],
        "next_attempt_at": [r["next_attempt_at"] for r in rows],
        "sequence_key": [r["sequence_key"] for r in rows],
        "event_id": event_id, "type": kind, "message_id": message_id, "payload": payload,
        # The enum's value: psycopg would write an Enum's name.
        "status": DeliveryStatus.PENDING.value, "max_attempts": max_attempts(),
        "created_at": now})


async def relay_events(session: AsyncSession, limit: int | None = None
                       ) -> tuple[int, bool, FanOut]:
    """Relay up to `limit` unrelayed events in the session's transaction; returns how
    many deliveries it made, whether more events may be waiting, and the fan-out (its
    audiences, events and endpoints, for a claim in the same transaction)."""
    limit = limit or BATCH
    fan_out = FanOut(session)
    stmt = select(Event).where(col(Event.relayed_at).is_(None))
    stmt = stmt.order_by(col(Event.id)).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    events = (await session.exec(stmt)).all()
    if not events:
        return 0, False, fan_out
    now = utcnow()
    rows = []
    for event in events:
        fan_out.events[event.id] = event
        rows += await fan_out.rows(event, now)
    if rows:
        await _insert(session, rows, now)
        # The new head of a line that had none goes now (its own statement per line:
        # only ordered endpoints' deliveries have one).
        await lines.release(session, {(r["endpoint_id"], r["sequence_key"]) for r in rows
                                      if r["sequence_key"] is not None})
    await session.exec(update(Event).where(col(Event.id).in_([e.id for e in events]))
                       .values(relayed_at=now))
    return len(rows), len(events) == limit, fan_out


async def sweep(runtime: Runtime) -> dict[str, int]:
    """Report the outbox depth and nudge the dispatcher, which relays what a lost nudge
    left and sends every due delivery (also those whose worker died: their lease ran
    out), in short bounded batches: this job itself does two counts and one nudge."""
    async with runtime.async_session() as session:
        pending = select(func.count()).where(WebhookDelivery.status == DeliveryStatus.PENDING)
        unrelayed = select(func.count()).where(col(Event.relayed_at).is_(None))
        deliveries = (await session.exec(pending)).one()
        events = (await session.exec(unrelayed)).one()
    OUTBOX_DEPTH.labels("deliveries").set(deliveries)
    OUTBOX_DEPTH.labels("events").set(events)
    await nudge(runtime.redis)
    return {"pending": deliveries, "unrelayed": events}
