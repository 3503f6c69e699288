"""What a running process holds: settings, key ring, database engines and Redis.

Built once per process in the app's lifespan (or by the worker and the command line),
never at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from redis import Redis as SyncRedis
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from shared import passwords
from shared.audit_mac import use_keyring
from shared.config import Settings
from shared.db.engine import (
    async_session_factory,
    create_async_db_engine,
    create_sync_engine,
    sync_session_factory,
)
from shared.receipts import use_issuer
from shared.redis_embedded import resolved_redis_url, start_embedded, stop_embedded
from shared.vault import KeyRing, SecretBox, load_keyring


@dataclass
class Runtime:
    settings: Settings
    keyring: KeyRing
    box: SecretBox
    engine: Engine
    async_engine: AsyncEngine
    session: sessionmaker[Session]
    async_session: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis
    # For sync code (Authlib runs in the thread pool).
    sync_redis: SyncRedis

    async def check_database(self) -> None:
        async with self.async_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def check_redis(self) -> None:
        await self.redis.ping()


def redis_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for every Redis client (sync or asyncio) a process makes.

    A Redis that accepts connections and never answers must not hold a request: each
    connect and each answer waits at most `KOPPEL_REDIS_TIMEOUT`, after which redis-py
    drops that connection and raises its TimeoutError, which every caller already takes
    for "Redis unreachable", as when Redis is down (a 503 with Retry-After where Redis
    guards the answer, a skipped outbox nudge that the worker's sweeper makes up for).
    No client made with these alone blocks on purpose (no pub/sub; arq's worker polls
    with its own pool, the status mirror keeps its own non-blocking socket, and the
    worker's dispatcher blocks on its nudges with a client of its own whose bound is
    its BRPOP's timeout plus this), so the bound only ever cuts a wait for a Redis
    that stopped answering."""
    return {"socket_timeout": settings.redis_timeout,
            "socket_connect_timeout": settings.redis_timeout}


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, *, bounded_database: bool = True,
                       ) -> AsyncIterator[Runtime]:
    """Build the runtime, and close everything it opened when the block ends.

    `bounded_database`: every wait for PostgreSQL is bounded by
    `KOPPEL_DATABASE_READ_TIMEOUT` (shared/db/engine.py), as API requests need; a
    process whose work may wait long on one statement, and that has its own bounds (the
    worker: arq's job timeouts), passes False and keeps only the TCP bounds."""
    settings.check_production()
    keyring = load_keyring(settings)
    box = SecretBox(keyring)
    use_keyring(box)  # the audit chain's MAC keys (shared/audit_mac.py)
    use_issuer(settings.issuer)  # the `iss` of consent receipts (shared/receipts/)
    passwords.use_settings(settings)  # the argon2 cost of new password hashes
    started_redis = start_embedded(settings) if settings.uses_embedded_redis else False
    answer_timeout = None
    if bounded_database and settings.database_read_timeout:
        answer_timeout = settings.database_read_timeout
    engine = create_sync_engine(settings.resolved_database_url, answer_timeout=answer_timeout)
    async_engine = create_async_db_engine(settings.resolved_database_url,
                                          answer_timeout=answer_timeout)
    url = resolved_redis_url(settings)
    client = aioredis.Redis.from_url(url, decode_responses=False, **redis_options(settings))
    sync_client = redis.Redis.from_url(url, decode_responses=False, **redis_options(settings))
    try:
        yield Runtime(
            settings=settings,
            keyring=keyring,
            box=box,
            engine=engine,
            async_engine=async_engine,
            session=sync_session_factory(engine),
            async_session=async_session_factory(async_engine),
            redis=client,
            sync_redis=sync_client,
        )
    finally:
        await client.aclose()
        sync_client.close()
        await async_engine.dispose()
        engine.dispose()
        if started_redis:
            stop_embedded(settings)
