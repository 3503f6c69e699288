"""What a command needs from its surroundings: the settings, a database session, and
Redis for the work that follows a commit.

Everything here is built when a command starts, never at import.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import redis.asyncio as aioredis
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from cli.output import stderr
from shared import passwords
from shared.audit_mac import use_settings
from shared.config import Settings, get_settings
from shared.db import create_sync_engine, sync_session_factory
from shared.receipts import use_issuer
from shared.redis_embedded import resolved_redis_url
from shared.runtime import redis_options
from shared.unit_of_work import UnitOfWork


def load_settings() -> Settings:
    """The settings in force, refused in production if they are unsafe defaults.

    A bad value raises; `handle_errors` renders it as one line.
    """
    settings = get_settings()
    settings.check_production()
    use_settings(settings)  # the audit chain's key ring, loaded if a command appends
    use_issuer(settings.issuer)  # the `iss` of consent receipts a command makes
    passwords.use_settings(settings)  # the argon2 cost of new password hashes (demo seed)
    return settings


def ensure_sqlite_dir(settings: Settings) -> None:
    """Create the directory of the SQLite file (the embedded default lives in var/)."""
    if not settings.uses_sqlite:
        return
    database = make_url(settings.resolved_database_url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def engine_for(settings: Settings) -> Iterator[Engine]:
    """A sync engine on the configured database, disposed when the block ends."""
    ensure_sqlite_dir(settings)
    engine = create_sync_engine(settings.resolved_database_url, pool_size=1)
    try:
        yield engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def transaction(settings: Settings) -> Iterator[Session]:
    """One session in one transaction: committed if the block succeeds, else rolled back.
    What the transaction noted for after its commit (a changed app, a status) is then
    flushed, as every writer does (shared/unit_of_work.py)."""
    with engine_for(settings) as engine:
        factory = sync_session_factory(engine)
        with factory() as session, session.begin():
            yield session
    work = UnitOfWork.detach(session)
    if work != UnitOfWork():
        asyncio.run(flush_after_commit(settings, work))


async def flush_after_commit(settings: Settings, work: UnitOfWork) -> None:
    """Flush a committed transaction's unit of work (shared/unit_of_work.py) through a
    Redis client of its own. An unreachable Redis is only reported: the services that
    keep statuses or client rows then keep them at most until they expire
    (shared/status_mirror.py MAX_AGE_S)."""
    client = aioredis.Redis.from_url(resolved_redis_url(settings), **redis_options(settings))
    try:
        await work.flush(client)
    except (OSError, aioredis.RedisError) as exc:
        stderr().print(f"note: the status cache was not updated ({exc})")
    finally:
        await client.aclose()


def check_database(engine: Engine) -> None:
    """Raise OperationalError unless the database answers `SELECT 1`."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def service_urls(settings: Settings) -> dict[str, str]:
    """The public base URLs of the three services."""
    return {
        "auth": settings.auth_url,
        "registry": settings.registry_url,
        "sync": settings.sync_url,
    }
