"""Engines and session factories for PostgreSQL and SQLite, sync and async.

Authlib's server side is synchronous, so the auth service uses the sync factory in a
thread pool; the other services may use the async one. On SQLite several processes
write to one file: it runs in WAL mode with a busy timeout, and every transaction
starts with BEGIN IMMEDIATE so that a reader never has to upgrade to a writer (which
SQLite answers with an immediate "database is locked" instead of waiting).
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

SQLITE_BUSY_TIMEOUT_MS = 30_000
# How long opening a PostgreSQL connection may take: past it the request answers 503
# (shared/errors.py) instead of hanging while the server is unreachable.
CONNECT_TIMEOUT_S = 5


def sync_url(url: str) -> str:
    """The URL with the sync driver Koppel uses (psycopg 3 for PostgreSQL)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() == "sqlite":
        parsed = parsed.set(drivername="sqlite")
    return parsed.render_as_string(hide_password=False)


def async_url(url: str) -> str:
    """The URL with the async driver Koppel uses (psycopg 3 async, aiosqlite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_sync_engine(url: str, *, pool_size: int = 5, echo: bool = False) -> Engine:
    """A sync engine for the URL; SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE."""
    url = sync_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )
        _configure_sqlite(engine)
        return engine
    # pool_pre_ping: a pooled connection that died with the server (a restart, a
    # failover) is replaced on checkout, so the process recovers without a restart.
    return create_engine(
        url, echo=echo, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size * 2,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


def create_async_db_engine(url: str, *, pool_size: int = 5, echo: bool = False) -> AsyncEngine:
    """An async engine for the URL, configured like the sync one."""
    url = async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine.sync_engine)
        return engine
    return create_async_engine(
        url, echo=echo, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size * 2,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


def sync_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for sync code (Authlib, the command line, jobs that need it)."""
    return sessionmaker(engine, class_=Session, expire_on_commit=False)


def async_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for async endpoints and jobs."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
