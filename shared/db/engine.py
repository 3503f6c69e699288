"""Engines and session factories for PostgreSQL and SQLite, sync and async.

Authlib's server side is synchronous, so the auth service uses the sync factory in a
thread pool; the other services may use the async one. On SQLite several processes
write to one file: it runs in WAL mode with a busy timeout, and every transaction
starts with BEGIN IMMEDIATE so that a reader never has to upgrade to a writer (which
SQLite answers with an immediate "database is locked" instead of waiting).

A PostgreSQL that stops answering is bounded at two levels:

- TCP (`TCP_OPTIONS`, every psycopg connection of every process; the sync read pool's
  asyncpg connections are bounded per statement instead): keepalive probes and
  `tcp_user_timeout` end a connection to a host that no longer acknowledges anything
  (crashed, partitioned away) within about a minute instead of the kernel's 15 minutes
  to 2 hours. They never end a statement that a live server is still working on: its
  kernel acknowledges what was sent and answers the probes however long it runs, so the
  CSV export, `koppel keys rotate`, migrations and bench seeding are not cut off.
- Answers (`answer_timeout`: `KOPPEL_DATABASE_READ_TIMEOUT` in the services' runtime,
  shared/runtime.py; never for the command line or migrations): a server whose kernel
  still acknowledges but that sends nothing back (a stopped or wedged postgres, a
  stuck proxy in front of it) is invisible to TCP. An engine given
  an `answer_timeout` waits at most that long for each answer (a statement's result, a
  commit), and at most `PING_TIMEOUT_S` for the ping of a pooled connection on checkout;
  past it the connection is closed (its state is unknown) and the request answers 503
  (shared/errors.py). This is a client-side bound per round trip, not a server-side
  `statement_timeout`: it needs no answer from the server to fire.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import waiting
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

SQLITE_BUSY_TIMEOUT_MS = 30_000
# How long opening a PostgreSQL connection may take: past it the request answers 503
# (shared/errors.py) instead of hanging while the server is unreachable.
CONNECT_TIMEOUT_S = 5
# libpq's TCP options (ignored on a Unix socket): probe a connection idle for 15 s every
# 5 s, and drop it once what was sent (data or probes) has gone unacknowledged for 30 s.
TCP_OPTIONS: dict[str, int] = {
    "keepalives": 1, "keepalives_idle": 15, "keepalives_interval": 5, "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds
}
# The ping of a pooled connection on checkout is an empty statement: a live server
# answers it in well under a millisecond, so a short bound tells a silent server fast.
# A connection that misses it is replaced (and the pool's idle ones with it), as after a
# restart; a new connection is bounded by CONNECT_TIMEOUT_S.
PING_TIMEOUT_S = 2.0
# What Connection.wait(timeout=...) raises when the bound expires (psycopg is pinned).
_WaitTimeout = psycopg.errors._WaitTimeout
_WAIT_INTERVAL_S = 0.1  # psycopg's own, between checks for an interrupt


class NoAnswer(psycopg.OperationalError):
    """PostgreSQL did not answer within the bound; the connection has been closed."""


class _BoundedWaits:
    """How long a connection waits for one answer of the server: `answer_timeout`
    seconds, None for as long as it takes (then only TCP bounds it)."""

    answer_timeout: float | None = None

    @contextlib.contextmanager
    def answering_within(self, seconds: float) -> Iterator[None]:
        """Use `seconds` as the bound inside the block (a ping's)."""
        before, self.answer_timeout = self.answer_timeout, seconds
        try:
            yield
        finally:
            self.answer_timeout = before

    def _bound(self, args: tuple, kwargs: dict[str, Any]) -> float | None:
        # A call that sets its own interval or timeout (psycopg's notifies()) keeps it.
        return None if args or "timeout" in kwargs else self.answer_timeout

    def _no_answer(self, pgconn: Any, bound: float) -> NoAnswer:
        # Half a round trip done, the rest may arrive any time: nothing can be sent on
        # this connection again. Closing it (as psycopg does when a cancel times out)
        # makes it `closed` and `broken`, which SQLAlchemy takes for a disconnect.
        pgconn.finish()
        return NoAnswer(f"PostgreSQL did not answer within {bound:g} s")


class BoundedConnection(_BoundedWaits, psycopg.Connection):
    """A sync psycopg connection whose waits for the server are bounded."""

    def wait(self, gen, *args, **kwargs):
        bound = self._bound(args, kwargs)
        if bound is None:
            return super().wait(gen, *args, **kwargs)
        try:
            return super().wait(gen, timeout=bound, **kwargs)
        except _WaitTimeout:
            raise self._no_answer(self.pgconn, bound) from None


class BoundedAsyncConnection(_BoundedWaits, psycopg.AsyncConnection):
    """An async psycopg connection whose waits for the server are bounded, and whose
    cancelled waits end at once."""

    async def wait(self, gen, *args, **kwargs):
        bound = self._bound(args, kwargs)
        if bound is None:
            return await super().wait(gen, *args, **kwargs)
        try:
            return await waiting.wait_async(
                gen, self.pgconn.socket, interval=kwargs.get("interval", _WAIT_INTERVAL_S),
                timeout=bound)
        except _WaitTimeout:
            raise self._no_answer(self.pgconn, bound) from None
        except asyncio.CancelledError:
            # The caller gave up (readyz's own timeout, a client gone mid-stream).
            # psycopg would ask the server to cancel and wait up to 10 s for it, in vain
            # if the server is silent; SQLAlchemy and the read pool discard a connection
            # interrupted mid-statement anyway, so close it now.
            self.pgconn.finish()
            raise


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


_FRESH = "koppel_fresh"  # in a pool record's info: connected, not pinged yet


def _configure_postgres(engine: Engine, answer_timeout: float | None) -> None:
    """Bound the connections' waits; with an `answer_timeout`, ping on checkout within
    PING_TIMEOUT_S (else SQLAlchemy's own pre-ping, bounded by TCP only)."""

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_connection, record) -> None:
        record.driver_connection.answer_timeout = answer_timeout
        if answer_timeout is not None:
            record.info[_FRESH] = True

    if answer_timeout is None:
        return

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, record, proxy) -> None:
        # pool_pre_ping's ping, with its own bound: skips a connection just opened, and
        # a failure replaces every idle connection of the pool and connects anew.
        if record.info.pop(_FRESH, False):
            return
        try:
            with proxy.driver_connection.answering_within(PING_TIMEOUT_S):
                engine.dialect.do_ping(dbapi_connection)
        except psycopg.Error as exc:
            raise InvalidatePoolError(f"ping on checkout failed: {exc}") from exc


def _postgres_options(pool_size: int, answer_timeout: float | None) -> dict[str, Any]:
    # pool_pre_ping (or the bounded ping above): a pooled connection that died with the
    # server (a restart, a failover) is replaced on checkout, so the process recovers
    # without a restart.
    return {
        "pool_pre_ping": answer_timeout is None, "pool_size": pool_size,
        "max_overflow": pool_size * 2,
        "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S, **TCP_OPTIONS},
    }


def create_sync_engine(url: str, *, pool_size: int = 5, echo: bool = False,
                       answer_timeout: float | None = None) -> Engine:
    """A sync engine for the URL; SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE.
    On PostgreSQL, `answer_timeout` bounds each wait for the server (module docstring);
    None (the default: the command line, migrations) lets long statements run."""
    url = sync_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, echo=echo, **_postgres_options(pool_size, answer_timeout))

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect, _record, cargs, cparams) -> BoundedConnection:
        return BoundedConnection.connect(*cargs, **cparams)

    _configure_postgres(engine, answer_timeout)
    return engine


def create_async_db_engine(url: str, *, pool_size: int = 5, echo: bool = False,
                           answer_timeout: float | None = None) -> AsyncEngine:
    """An async engine for the URL, configured like the sync one."""
    url = async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine.sync_engine)
        return engine
    options = _postgres_options(pool_size, answer_timeout)
    # SQLAlchemy's psycopg adapter awaits this instead of AsyncConnection.connect (the
    # hook its documented `async_creator` uses), with the dialect's own arguments.
    options["connect_args"]["async_creator_fn"] = BoundedAsyncConnection.connect
    engine = create_async_engine(url, echo=echo, **options)
    _configure_postgres(engine.sync_engine, answer_timeout)
    return engine


def sync_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for sync code (Authlib, the command line, jobs that need it)."""
    return sessionmaker(engine, class_=Session, expire_on_commit=False)


def async_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for async endpoints and jobs."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
