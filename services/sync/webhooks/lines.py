"""Lines: the deliveries that go one at a time (an ordered endpoint's, per customer; a
recovery's). A line's head is its first pending delivery (by id); every other pending
delivery of it is parked (no next_attempt_at), so the claim's index never walks it.

Whatever may change a line's head (new deliveries, a head that settles, a recovery, a
redelivery) calls `release` in its own transaction: the head, if parked, is due now.
On PostgreSQL the lines are locked first (transaction-scoped advisory locks, in one
order), so that two transactions each changing a line (a relay adding to it while a
record settles its head) cannot both miss the other's change and leave it parked;
SQLite runs one writing transaction at a time (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

from sqlalchemy import text
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db.types import utcnow
from shared.models import DeliveryStatus, WebhookDelivery
from shared.unit_of_work import unit_of_work

D = WebhookDelivery
Line = tuple[uuid.UUID, str]  # (endpoint id, sequence key)

# Taken in the array's order (a function scan of unnest yields it in order).
_LOCK = text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS k")


def _lock_id(line: Line) -> int:
    digest = hashlib.blake2b(f"webhook-line:{line[0]}:{line[1]}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


async def lock(session: AsyncSession, lines: Iterable[Line]) -> None:
    """Lock the lines until the transaction ends (PostgreSQL; SQLite needs none)."""
    keys = sorted({_lock_id(line) for line in lines})  # one order: no deadlock
    if keys and session.get_bind().dialect.name == "postgresql":
        await session.exec(_LOCK, params={"keys": keys})  # type: ignore[call-overload]


async def release(session: AsyncSession, lines: Iterable[Line]) -> int:
    """In the session's transaction: make the head of each line due now if it is parked;
    returns how many were, and nudges the dispatcher if any."""
    todo = sorted(set(lines))
    if not todo:
        return 0
    await lock(session, todo)
    now, released = utcnow(), 0
    for endpoint_id, key in todo:
        head = (select(D.id).where(D.endpoint_id == endpoint_id, D.sequence_key == key,
                                   D.status == DeliveryStatus.PENDING)
                .order_by(col(D.id)).limit(1).scalar_subquery())
        result = await session.exec(update(D).where(col(D.id) == head,
                                                    col(D.next_attempt_at).is_(None))
                                    .values(next_attempt_at=now))
        released += result.rowcount or 0
    if released:
        unit_of_work(session).nudge_relay()  # the dispatcher sends what is due
    return released
