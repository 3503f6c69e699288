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
