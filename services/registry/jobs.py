"""The registry's jobs in the worker (worker/main.py schedules them): writing the uses of
connections that services noted in Redis (shared/last_used.py) to `last_used_at`, and the
scopes they needed to `scope_used_at`, which Manage apps and the environment overview
show; signing checkpoints of the audit chains (shared/audit_checkpoints.py) every
`KOPPEL_AUDIT_CHECKPOINT_INTERVAL` seconds; and
purging the stored answers of idempotent requests (shared/idempotency) once their 24
hours are over; and the consent lifetime's notices and expiries
(services/registry/connections/expiry.py); and the defaults of access reviews at their
due dates (services/registry/reviews/due.py).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import case, literal, or_, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select

from services.registry.connections.expiry import expire_due, notify_expiring
from services.registry.reviews.due import apply_defaults, due_review
from shared.audit_checkpoints import checkpoint_due
from shared.db.types import UTCDateTime, utcnow
from shared.idempotency import purge_expired
from shared.last_used import PENDING_KEY, SCOPE_PENDING_KEY
from shared.models import Connection
from shared.unit_of_work import UnitOfWork

FLUSH_BATCH = 1000

# Take the whole pending hash atomically: a use noted meanwhile lands in a new one.
# A flush takes the pending hash (KEYS[1]) by renaming it to its taking key (KEYS[2]),
# and deletes that only once the database has every note (`_taken`): a flush that fails
# or dies midway leaves the notes there, and the next flush writes those first (then the
# ones noted meanwhile, at the flush after). A note written twice changes nothing: the
# writes only move times forward.
_TAKE = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return {}
  end
  redis.call('RENAME', KEYS[1], KEYS[2])
end
return redis.call('HGETALL', KEYS[2])
"""


def _taking(key: str) -> str:
    return f"{key}:taking"


async def _take(client: aioredis.Redis, key: str) -> list:
    """The notes of the pending hash `key` (or those a failed flush left)."""
    # redis-py types a command of its async client as "awaitable or result".
    return await client.eval(_TAKE, 2, key, _taking(key))  # type: ignore[misc]


async def _taken(client: aioredis.Redis, key: str) -> None:
    """The taken notes of `key` are in the database: forget them."""
    await client.delete(_taking(key))


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    """The job `idempotency.purge_expired`: returns how many answers were deleted."""
    return await purge_expired(ctx["runtime"].async_session)


async def expire_connections(ctx: dict[str, Any], now: datetime | None = None
                             ) -> dict[str, int]:
    """The job `connections.expire` (every minute): `connection.expiring` for connections
    within `KOPPEL_CONSENT_EXPIRY_NOTICE_DAYS` of their expiry, then expire those whose
    time has come. `now` is for tests (time moved without sleeping)."""
    runtime = ctx["runtime"]
    return await run_expiry(runtime.async_session, runtime.redis,
                            runtime.settings.consent_expiry_notice_days, now or utcnow())


async def run_expiry(session_factory: async_sessionmaker, client: aioredis.Redis,
                     notice_days: int, now: datetime) -> dict[str, int]:
    """Notices, then expiries, in batches of one transaction each; the statuses of the
    expired connections are published after each commit (their tokens fail at once)."""
    counts = {"expiring": 0, "expired": 0}
    for name in ("expiring", "expired"):
        while True:
            async with session_factory() as session:
                if name == "expiring":
                    done = await notify_expiring(session, now, timedelta(days=notice_days))
                else:
                    done = len(await expire_due(session, now))
                await session.commit()
                await UnitOfWork.detach(session).flush(client)
            counts[name] += done
            if not done:
                break
    return counts


async def complete_access_reviews(ctx: dict[str, Any], now: datetime | None = None) -> int:
    """The job `access_reviews.complete` (every minute): the default of each review past
    its due date decides its undecided items, then the review is completed. `now` is
    for tests. Returns how many items the defaults decided."""
    runtime = ctx["runtime"]
    return await run_review_defaults(runtime.async_session, runtime.redis, now or utcnow())


async def run_review_defaults(session_factory: async_sessionmaker, client: aioredis.Redis,
                              now: datetime) -> int:
    """Batches of one transaction each; the statuses of revoked connections are published
    after each commit (their tokens fail at once)."""
    decided = 0
    while True:
        async with session_factory() as session:
            review = await due_review(session, now)
            if review is None:
                return decided
            decided += await apply_defaults(session, review, now)
            await session.commit()
            await UnitOfWork.detach(session).flush(client)


async def record_last_used(ctx: dict[str, Any]) -> int:
    """The job `connections.record_last_used`."""
    runtime = ctx["runtime"]
    written = await flush_last_used(runtime.redis, runtime.async_session)
    await flush_scope_uses(runtime.redis, runtime.async_session)
    return written


async def audit_checkpoint(ctx: dict[str, Any]) -> int:
    """The job `audit.checkpoint` (every minute): a signed checkpoint for each audit chain
    that moved and whose newest checkpoint is older than the interval, or has none."""
    runtime = ctx["runtime"]
    interval = timedelta(seconds=runtime.settings.audit_checkpoint_interval)
    return await asyncio.to_thread(checkpoint_due, runtime.session, runtime.box, interval)


def _parse(items: list) -> dict[uuid.UUID, datetime]:
    pending: dict[uuid.UUID, datetime] = {}
    for raw_id, raw_at in zip(items[::2], items[1::2], strict=True):
        try:
            ident = uuid.UUID(raw_id.decode() if isinstance(raw_id, bytes) else raw_id)
            at = datetime.fromtimestamp(float(raw_at), UTC)
        except (ValueError, TypeError, OverflowError):
            continue
        pending[ident] = at
    return pending


async def _update(session_factory: async_sessionmaker, batch: dict[uuid.UUID, datetime]) -> int:
    """One UPDATE: each connection's last_used_at moves forward, never back."""
    new = case({ident: literal(at, UTCDateTime()) for ident, at in batch.items()},
               value=col(Connection.id))
    stmt = (
        update(Connection)
        .where(col(Connection.id).in_(list(batch)),
               or_(col(Connection.last_used_at).is_(None), col(Connection.last_used_at) < new))
        .values(last_used_at=new)
        .execution_options(synchronize_session=False)
    )
    async with session_factory() as session:
        result = await session.exec(stmt)
        await session.commit()
    return result.rowcount or 0


async def flush_last_used(client: aioredis.Redis, session_factory: async_sessionmaker,
                          batch_size: int = FLUSH_BATCH) -> int:
    """Write the noted uses to the database; returns how many connections were updated.
    The notes stay in Redis until every batch is committed (`_TAKE`)."""
    items = list(_parse(await _take(client, PENDING_KEY)).items())
    written = 0
    for start in range(0, len(items), batch_size):
        written += await _update(session_factory, dict(items[start:start + batch_size]))
    await _taken(client, PENDING_KEY)
    return written


def _parse_scope_uses(items: list) -> dict[uuid.UUID, dict[str, datetime]]:
    """The pending hash of scope uses: connection id -> scope -> time."""
    uses: dict[uuid.UUID, dict[str, datetime]] = {}
    for raw_field, raw_at in zip(items[::2], items[1::2], strict=True):
        try:
            field = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
            raw_id, scope = field.split(" ", 1)
            at = datetime.fromtimestamp(float(raw_at), UTC)
            uses.setdefault(uuid.UUID(raw_id), {})[scope] = at
        except (ValueError, TypeError, OverflowError):
            continue
    return uses


async def _merge_scope_uses(session_factory: async_sessionmaker,
                            batch: dict[uuid.UUID, dict[str, datetime]]) -> int:
    """One transaction: each connection's `scope_used_at` takes the newer time of each
    scope it still grants (a scope dropped meanwhile is not brought back)."""
    changed = 0
    async with session_factory() as session:
        stmt = select(Connection).where(col(Connection.id).in_(list(batch)))
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        for connection in (await session.exec(stmt)).all():
            merged = dict(connection.scope_used_at or {})
            for scope, at in batch[connection.id].items():
                known = merged.get(scope)
                if scope in connection.scopes and (
                        known is None or datetime.fromisoformat(known) < at):
                    merged[scope] = at.isoformat()
            if merged != connection.scope_used_at:
                connection.scope_used_at = merged
                session.add(connection)
                changed += 1
        await session.commit()
    return changed


async def flush_scope_uses(client: aioredis.Redis, session_factory: async_sessionmaker,
                           batch_size: int = FLUSH_BATCH) -> int:
    """Write the noted scope uses to the database; returns how many connections changed.
    The notes stay in Redis until every batch is committed, like `flush_last_used`."""
    items = list(_parse_scope_uses(await _take(client, SCOPE_PENDING_KEY)).items())
    written = 0
    for start in range(0, len(items), batch_size):
        written += await _merge_scope_uses(session_factory,
                                           dict(items[start:start + batch_size]))
    await _taken(client, SCOPE_PENDING_KEY)
    return written
