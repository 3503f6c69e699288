"""When a connection was last used, recorded cheaply (at most about once a minute each).

A use is an access token of the connection accepted by a resource server, or its refresh
token redeemed. The first use in a minute wins `SET koppel:lastused:<id> 1 NX EX 60` and,
in the same Redis round trip (one Lua call), notes the time in a pending hash; the job
`connections.record_last_used` moves the pending hash to the database with one UPDATE
per batch. A process also remembers what it noted, so repeated calls cost no I/O at all.
Nothing here raises into a request: a lost note (Redis down or flushed) only means a
missed update, which the next use repairs.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError
from sqlalchemy import case, literal, or_, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col

from shared.db.types import UTCDateTime
from shared.models import Connection

log = structlog.get_logger("koppel.last_used")

WINDOW_S = 60
PENDING_KEY = "koppel:lastused:pending"
FLUSH_BATCH = 1000
MAX_REMEMBERED = 100_000

# KEYS[1] the per-connection marker, KEYS[2] the pending hash; ARGV: window, id, time.
_NOTE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  return 1
end
return 0
"""
# Take the whole pending hash atomically: a use noted meanwhile lands in a new one.
_TAKE = """
local items = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return items
"""
# Put back what a failed flush took, without overwriting newer notes.
_GIVE_BACK = """
for i = 1, #ARGV, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 0
"""


def marker_key(connection_id: uuid.UUID | str) -> str:
    return f"koppel:lastused:{connection_id}"


class _Throttle:
    """What this process noted recently: connection id -> monotonic time it may note again."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def due(self, ident: str) -> bool:
        now = time.monotonic()
        if self._until.get(ident, 0.0) > now:
            return False
        if len(self._until) >= MAX_REMEMBERED:
            self._until = {k: v for k, v in self._until.items() if v > now}
            if len(self._until) >= MAX_REMEMBERED:
                self._until.clear()
        self._until[ident] = now + WINDOW_S
        return True


class UsageRecorder:
    """Notes uses of connections from async code (resource servers); one per process."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._throttle = _Throttle()
        self._note = client.register_script(_NOTE)

    async def used(self, connection_id: uuid.UUID | str, at: float | None = None) -> bool:
        """Note a use of the connection; True if this call recorded it. Never raises."""
        ident = str(connection_id)
        if not self._throttle.due(ident):
            return False
        try:
            return bool(await self._note(keys=[marker_key(ident), PENDING_KEY],
                                         args=[WINDOW_S, ident, at or time.time()]))
        except (RedisError, OSError):
            log.warning("last use not recorded: Redis unavailable", connection_id=ident)
            return False


async def record_use(client: aioredis.Redis, connection_id: uuid.UUID | str,
                     at: float | None = None) -> bool:
    """Note a use without the process's memory (the auth service, after a refresh token
    is redeemed); True if it was recorded, False within the minute or when Redis fails.
    Never raises."""
    ident = str(connection_id)
    try:
        return bool(await client.eval(_NOTE, 2, marker_key(ident), PENDING_KEY, WINDOW_S,
                                      ident, at or time.time()))
    except (RedisError, OSError):
        log.warning("last use not recorded: Redis unavailable", connection_id=ident)
        return False


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
    """Write the noted uses to the database (the job `connections.record_last_used`);
    returns how many connections were updated."""
    pending = _parse(await client.eval(_TAKE, 1, PENDING_KEY))
    items = list(pending.items())
    written = 0
    for start in range(0, len(items), batch_size):
        batch = dict(items[start:start + batch_size])
        try:
            written += await _update(session_factory, batch)
        except Exception:
            rest = [v for ident, at in items[start:]
                    for v in (str(ident), at.timestamp())]
            await client.eval(_GIVE_BACK, 1, PENDING_KEY, *rest)
            raise
    return written
