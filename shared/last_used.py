"""When a connection was last used, recorded cheaply (at most about once a minute each).

A use is an access token of the connection accepted by a resource server, or its refresh
token redeemed. The first use in a minute wins `SET koppel:lastused:<id> 1 NX EX 60` and,
in the same Redis round trip (one Lua call), notes the time in a pending hash; the job
`connections.record_last_used` (services/registry/jobs.py) moves the pending hash to
the database with one UPDATE per batch. A process also remembers what it noted, so
repeated calls cost no I/O at all.
Which scope a call of the data API needed is noted the same way, per connection and scope
(`note_scope`, marker `koppel:scopeused:<id>:<scope>`, pending hash `koppel:scopeused:pending`
with fields `<id> <scope>`); the same job merges them into `connections.scope_used_at`.
Nothing here raises into a request: a lost note (Redis down or flushed) only means a
missed update, which the next use repairs.
"""

from __future__ import annotations

import time
import uuid

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

log = structlog.get_logger("koppel.last_used")

WINDOW_S = 60
PENDING_KEY = "koppel:lastused:pending"
SCOPE_PENDING_KEY = "koppel:scopeused:pending"
MAX_REMEMBERED = 100_000

# KEYS[1] the per-connection marker, KEYS[2] the pending hash; ARGV: window, id, time.
_NOTE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  return 1
end
return 0
"""


def marker_key(connection_id: uuid.UUID | str) -> str:
    return f"koppel:lastused:{connection_id}"


def scope_marker_key(connection_id: uuid.UUID | str, scope: str) -> str:
    return f"koppel:scopeused:{connection_id}:{scope}"


def scope_field(connection_id: uuid.UUID | str, scope: str) -> str:
    """The pending hash's field for a use of `scope` by the connection."""
    return f"{connection_id} {scope}"


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

    def __init__(self, client: aioredis.Redis, *, track_scopes: bool = True) -> None:
        self._client = client
        self._track_scopes = track_scopes
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

    async def scope_used(self, connection_id: uuid.UUID | str, scope: str,
                         at: float | None = None) -> bool:
        """Note that a call of the connection needed `scope` (the consented scope that
        satisfied the rule); True if this call recorded it. Never raises. Nothing is
        noted when scope usage tracking is off (KOPPEL_SCOPE_USAGE_TRACKING)."""
        if not self._track_scopes:
            return False
        ident = str(connection_id)
        if not self._throttle.due(scope_field(ident, scope)):
            return False
        try:
            return bool(await self._note(
                keys=[scope_marker_key(ident, scope), SCOPE_PENDING_KEY],
                args=[WINDOW_S, scope_field(ident, scope), at or time.time()]))
        except (RedisError, OSError):
            log.warning("scope use not recorded: Redis unavailable", connection_id=ident)
            return False


async def record_use(client: aioredis.Redis, connection_id: uuid.UUID | str,
                     at: float | None = None) -> bool:
    """Note a use without the process's memory (the auth service, after a refresh token
    is redeemed); True if it was recorded, False within the minute or when Redis fails.
    Never raises."""
    ident = str(connection_id)
    try:
        # redis-py encodes numbers as arguments, though its types accept only strings, and
        # types a command of its async client as "awaitable or result".
        return bool(await client.eval(_NOTE, 2, marker_key(ident), PENDING_KEY, WINDOW_S,  # type: ignore[misc, arg-type]
                                      ident, at or time.time()))  # type: ignore[arg-type]
    except (RedisError, OSError):
        log.warning("last use not recorded: Redis unavailable", connection_id=ident)
        return False
