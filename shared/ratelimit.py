"""Fixed-window counters in Redis, for failed attempts and per-client request budgets,
and successive slots (a generic cell rate algorithm), for webhook endpoints' delivery
rates."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import cast

import redis.asyncio as aioredis


def redis_key(name: str) -> str:
    """The Redis key of the counter or slot `name`."""
    return f"koppel:rl:{name}"


async def retry_after(client: aioredis.Redis, name: str, limit: int) -> int | None:
    """Seconds until `name` may try again if it has used up `limit`; None if it may now."""
    key = redis_key(name)
    pipe = client.pipeline(transaction=False)
    pipe.get(key)
    pipe.ttl(key)
    count, ttl = await pipe.execute()
    if count is not None and int(count) >= limit:
        return max(int(ttl), 1)
    return None


async def record(client: aioredis.Redis, name: str, window_s: int) -> int:
    """Count one event for `name` in the current window; returns the count so far."""
    key = redis_key(name)
    pipe = client.pipeline(transaction=True)
    # SET NX starts the window (with its expiry) only if none is running; works on Redis 6.
    pipe.set(key, 0, ex=window_s, nx=True)
    pipe.incr(key)
    _, count = await pipe.execute()
    return int(count)


async def reset(client: aioredis.Redis, name: str) -> None:
    await client.delete(redis_key(name))


async def take_turn(client: aioredis.Redis, name: str, interval_s: int) -> int | None:
    """Take `name`'s one turn of the next `interval_s` seconds: None if taken now,
    else the seconds until the running turn ends."""
    key = redis_key(f"turn:{name}")
    pipe = client.pipeline(transaction=True)
    pipe.set(key, 1, ex=interval_s, nx=True)
    pipe.ttl(key)
    taken, ttl = await pipe.execute()
    return None if taken else max(int(ttl), 1)


async def hold_turn(client: aioredis.Redis, name: str, interval_s: int) -> None:
    """Start a new turn of `name` now: nobody takes one for `interval_s` seconds."""
    await client.set(redis_key(f"turn:{name}"), 1, ex=interval_s)


async def count(client: aioredis.Redis, name: str) -> int:
    """The events counted for `name` in its current window."""
    value = await client.get(redis_key(name))
    return int(value) if value is not None else 0


# Successive slots (GCRA): KEYS[1] holds the endpoint's next free slot, which only moves
# on. `n` sends take the next `n` slots, one an interval apart; a burst of `burst` may
# go ahead of the slot, as from a bucket of `burst` tokens. Returns the first one's slot
# before the burst allowance (the caller lays them out).
_RESERVE = """
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local now, n = tonumber(ARGV[3]), tonumber(ARGV[4])
local free = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local base = math.max(free, now)
local after = base + n * interval
redis.call('SET', KEYS[1], string.format('%.6f', after), 'EX', math.ceil(after - now) + 60)
return string.format('%.6f', base)
"""


async def reserve_slots(client: aioredis.Redis, name: str, rate: float, wanted: int,
                        now: float) -> list[float]:
    """Reserve `wanted` successive send times for `name` at `rate` a second (bursts up to
    one second's worth): each at or after `now` (epoch seconds), in order, never given
    out twice (the next free slot only moves on)."""
    interval, burst = 1 / rate, max(rate, 1)
    reply = client.eval(_RESERVE, 1, redis_key(f"slot:{name}"), repr(interval), str(burst),
                        repr(now), str(wanted))
    base = float(await cast(Awaitable[str], reply)) - (burst - 1) * interval
    # Microseconds are what the database keeps: a slot within one of now is now.
    return [now if base + i * interval <= now + 1e-6 else base + i * interval
            for i in range(wanted)]
