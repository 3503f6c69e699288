"""What a running process holds: settings, key ring, database engines and Redis.

Built once per process in the app's lifespan (or by the worker and the command line),
never at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.config import Settings
from shared.db.engine import (
    async_session_factory,
    create_async_db_engine,
    create_sync_engine,
    sync_session_factory,
)
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
    sync_redis: redis.Redis

    async def check_database(self) -> None:
        async with self.async_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def check_redis(self) -> None:
        await self.redis.ping()


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Build the runtime, and close everything it opened when the block ends."""
    settings.check_production()
    keyring = load_keyring(settings)
    started_redis = start_embedded(settings) if settings.uses_embedded_redis else False
    engine = create_sync_engine(settings.resolved_database_url)
    async_engine = create_async_db_engine(settings.resolved_database_url)
    client = aioredis.Redis.from_url(resolved_redis_url(settings), decode_responses=False)
    sync_client = redis.Redis.from_url(resolved_redis_url(settings), decode_responses=False)
    try:
        yield Runtime(
            settings=settings,
            keyring=keyring,
            box=SecretBox(keyring),
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
