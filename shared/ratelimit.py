"""Fixed-window counters in Redis, for failed attempts and per-client request budgets."""

from __future__ import annotations

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
