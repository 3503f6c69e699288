"""Fixed-window counters in Redis, for failed attempts and per-client request budgets,
and token buckets, for webhook endpoints' delivery rates."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import cast

import redis.asyncio as aioredis


def _key(name: str) -> str:
    return f"koppel:rl:{name}"


async def retry_after(client: aioredis.Redis, name: str, limit: int) -> int | None:
    """Seconds until `name` may try again if it has used up `limit`; None if it may now."""
    key = _key(name)
    pipe = client.pipeline(transaction=False)
    pipe.get(key)
    pipe.ttl(key)
    count, ttl = await pipe.execute()
    if count is not None and int(count) >= limit:
        return max(int(ttl), 1)
    return None


async def record(client: aioredis.Redis, name: str, window_s: int) -> int:
    """Count one event for `name` in the current window; returns the count so far."""
    key = _key(name)
    pipe = client.pipeline(transaction=True)
    # SET NX starts the window (with its expiry) only if none is running; works on Redis 6.
    pipe.set(key, 0, ex=window_s, nx=True)
    pipe.incr(key)
    _, count = await pipe.execute()
    return int(count)


async def reset(client: aioredis.Redis, name: str) -> None:
    await client.delete(_key(name))


async def take_turn(client: aioredis.Redis, name: str, interval_s: int) -> int | None:
    """Take `name`'s one turn of the next `interval_s` seconds: None if taken now,
    else the seconds until the running turn ends."""
    key = _key(f"turn:{name}")
    pipe = client.pipeline(transaction=True)
    pipe.set(key, 1, ex=interval_s, nx=True)
    pipe.ttl(key)
    taken, ttl = await pipe.execute()
    return None if taken else max(int(ttl), 1)


async def hold_turn(client: aioredis.Redis, name: str, interval_s: int) -> None:
    """Start a new turn of `name` now: nobody takes one for `interval_s` seconds."""
    await client.set(_key(f"turn:{name}"), 1, ex=interval_s)


async def count(client: aioredis.Redis, name: str) -> int:
    """The events counted for `name` in its current window."""
    value = await client.get(_key(name))
    return int(value) if value is not None else 0


# A token bucket: `capacity` tokens, refilled at `rate` a second; takes up to ARGV[4].
_TAKE = """
local rate, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local now, wanted = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then tokens, at = capacity, now end
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return {granted, tostring(tokens)}
"""


async def take_tokens(client: aioredis.Redis, name: str, rate: float, wanted: int
                      ) -> tuple[int, float]:
    """Take up to `wanted` tokens from `name`'s bucket (`rate` a second, holding at most
    one second's worth): how many were granted, and the fraction of a token left."""
    reply = client.eval(_TAKE, 1, _key(f"bucket:{name}"), str(rate), str(max(rate, 1)),
                        repr(time.time()), str(wanted))
    granted, left = await cast(Awaitable[list], reply)
    return int(granted), float(left)
