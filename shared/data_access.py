"""Noting the data-access log's entries in Redis: one Lua call per request at most,
shared by the requests of the moment.

A data API call of an app (a connection's, or a first-party app's with a user's token)
notes which employees' data it read or changed, under which scope, before its answer
is sent; the notes of concurrent requests share one Lua call (`_Batcher`). Per entry key
(environment, connection, employee, scope, action, UTC day, first party, client id) the
pending hash `koppel:dataaccess:pending` holds three fields: `c <key>` the count
(HINCRBY), `f <key>` and `l <key>` the first and last time (epoch seconds). The worker's
flush (services/sync/access_log.py) renames the hash and adds it to the database.

Nothing here raises into a request: a note lost to a Redis failure is logged and gone
(docs/product.md says what Redis losing its data can lose).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
import structlog
from redis.exceptions import NoScriptError, RedisError

from shared.db.types import uuid7

log = structlog.get_logger("koppel.data_access")

PENDING_KEY = "koppel:dataaccess:pending"

# KEYS[1] the pending hash; ARGV[1] a new generation id, then pairs of a time and an
# entry key (one call each). The hash keeps the first generation id it was given
# (field `gen`): the flush applies it as the batch id, so a hash that Redis brings back
# after it was applied (a snapshot restore, a failover) is recognised, not counted twice.
_NOTE = """
redis.call('HSETNX', KEYS[1], 'gen', ARGV[1])
for i = 2, #ARGV, 2 do
  local at, k = ARGV[i], ARGV[i + 1]
  local t = tonumber(at)
  redis.call('HINCRBY', KEYS[1], 'c ' .. k, 1)
  local f = redis.call('HGET', KEYS[1], 'f ' .. k)
  if not f or tonumber(f) > t then redis.call('HSET', KEYS[1], 'f ' .. k, at) end
  local l = redis.call('HGET', KEYS[1], 'l ' .. k)
  if not l or tonumber(l) < t then redis.call('HSET', KEYS[1], 'l ' .. k, at) end
end
return (#ARGV - 1) / 2
"""
# The script's name in Redis (EVALSHA): SHA-1 is what Redis names scripts by.
_NOTE_SHA = hashlib.sha1(_NOTE.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Access:
    """One call's access to the data of some employees: who, which slice, read or write."""

    environment_id: uuid.UUID
    client_id: str
    connection_id: uuid.UUID | None  # None: a first-party app (a user's token)
    first_party: bool
    scope: str
    action: str  # shared.models.AccessAction
    employee_ids: tuple[uuid.UUID, ...]

    def keys(self, day: str) -> list[str]:
        """The pending hash's entry keys of this access on `day` (ISO date)."""
        head = (f"{self.environment_id} {self.connection_id or '-'}")
        tail = f"{self.scope} {self.action} {day} {int(self.first_party)} {self.client_id}"
        return [f"{head} {employee} {tail}" for employee in dict.fromkeys(self.employee_ids)]


@dataclass(frozen=True)
class Entry:
    """A noted entry key, parsed (the flush's view of `Access.keys`)."""

    environment_id: uuid.UUID
    connection_id: uuid.UUID | None
    employee_id: uuid.UUID
    scope: str
    action: str
    day: str
    first_party: bool
    client_id: str


def parse_key(key: str) -> Entry:
    """The entry of a key made by `Access.keys` (ValueError if it is none)."""
    env, conn, employee, scope, action, day, first_party, client_id = key.split(" ", 7)
    return Entry(uuid.UUID(env), None if conn == "-" else uuid.UUID(conn), uuid.UUID(employee),
                 scope, action, day, first_party == "1", client_id)


GENERATION_FIELD = "gen"
# Entries per Lua call: a burst of large lists goes as several calls (pipelined), so no
# one script holds Redis for long.
MAX_PAIRS_PER_CALL = 2000


async def _send(client: aioredis.Redis, args: list[str]) -> bool:
    """Lua calls counting the (time, key) pairs, at most MAX_PAIRS_PER_CALL each, in one
    pipelined round trip; False when Redis failed."""
    step = 2 * MAX_PAIRS_PER_CALL
    chunks = [args[i:i + step] for i in range(0, len(args), step)]
    try:
        generation = uuid7().hex  # time-ordered: the flush applies older batches first
        try:
            pipe = client.pipeline(transaction=False)
            for chunk in chunks:
                pipe.evalsha(_NOTE_SHA, 1, PENDING_KEY, generation, *chunk)
            await pipe.execute()
        except NoScriptError:
            await client.script_load(_NOTE)
            pipe = client.pipeline(transaction=False)
            for chunk in chunks:
                pipe.evalsha(_NOTE_SHA, 1, PENDING_KEY, generation, *chunk)
            await pipe.execute()
    except (RedisError, OSError):
        log.warning("data access not noted: Redis unavailable", entries=len(args) // 2)
        return False
    return True


class _Batcher:
    """Group commit of one Redis client's notes: a note made while a call is on its way
    waits for it, then goes with every note that queued up meanwhile, in one Lua call.
    Each caller still waits until its own note is in Redis (a response is sent only
    after its call was counted), but under load many requests share a round trip."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._queue: list[tuple[list[str], asyncio.Future[bool]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def note(self, args: list[str]) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((args, done))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_queued())
        return await done

    async def _send_queued(self) -> None:
        batch: list[tuple[list[str], asyncio.Future[bool]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                ok = await _send(self._client, [a for args, _ in batch for a in args])
                for _, done in batch:
                    if not done.done():  # its request may have been cancelled
                        done.set_result(ok)
        finally:
            # Only if this task failed or was cancelled itself: nobody waits for ever.
            self._sender = None
            for _, done in (*batch, *self._queue):
                if not done.done():
                    done.set_result(False)
            self._queue = []


def _batcher(client: aioredis.Redis) -> _Batcher:
    batcher = getattr(client, "_koppel_access_notes", None)
    if batcher is None:
        batcher = _Batcher(client)
        client._koppel_access_notes = batcher  # type: ignore[attr-defined]
    return batcher


async def note_accesses(client: aioredis.Redis, accesses: Iterable[Access],
                        at: float | None = None) -> int:
    """Count the accesses in the pending hash (one Lua call, shared with the process's
    other notes of the moment); returns how many entries were counted, 0 when Redis
    failed. Never raises."""
    now = at if at is not None else time.time()
    day = datetime.fromtimestamp(now, UTC).date().isoformat()
    stamp = repr(now)
    args = [a for access in accesses for key in access.keys(day) for a in (stamp, key)]
    if not args:
        return 0
    return len(args) // 2 if await _batcher(client).note(args) else 0
