"""A small pool of asyncpg connections for the API's hottest reads
(resources/employee_read.py), PostgreSQL only.

Each read is one statement, so it needs no transaction and none of SQLAlchemy's
execution layer, whose per-call cost is larger than the query's. The driver is asyncpg:
`make bench SCENARIO=driver` measures this statement at about 3.7 times as many per
CPU-second as on psycopg 3 prepared in autocommit (docs/benchmarks.md); the rest of the
services keep psycopg under SQLAlchemy. asyncpg prepares and caches each statement per
connection. Connections are not pinged on checkout (a round trip per read): a read that
finds its connection dead drops every idle connection (a restart or failover took them
all) and retries once on a fresh one. A database that cannot be reached raises
asyncpg's connection errors, which the app answers 503 (shared/errors.py).

A server that stops answering is bounded like the engines' (shared/db/engine.py): a new
connection waits at most `connect_timeout`, and each read at most `read_timeout` for its
answer. A read is one single-row statement, as quick for a live server as the engines'
checkout ping, so it gets the ping's bound by default; a reused connection that misses
it counts as dead (closed, the idle ones dropped, one retry on a fresh connection,
itself bounded by `connect_timeout`), exactly as a failed ping does. A connection whose
read was cancelled or failed mid-statement is closed, never reused.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from shared.db.engine import PING_TIMEOUT_S

# What a dead or silent connection raises: asyncpg's own errors, the socket's, a bound.
_LOST = (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError,
         asyncpg.InterfaceError, OSError, TimeoutError)


class ReadPool:
    """At most `size` connections, used one read at a time each; one per event loop."""

    def __init__(self, database_url: str, *, size: int, connect_timeout: float,
                 read_timeout: float | None = PING_TIMEOUT_S) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: list[asyncpg.Connection] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """The first row of `sql` (asyncpg's `$n` parameters), retried once on a fresh
        connection if the pooled one was dead."""
        for attempt in (1, 2):
            async with self._slots:
                reused = bool(self._idle)
                conn = self._idle.pop() if reused else await self._connect()
                healthy = False
                try:
                    row = await conn.fetchrow(sql, *args, timeout=self._read_timeout)
                    healthy = True
                    return row
                except _LOST as exc:
                    if attempt == 2 or not reused:
                        raise _unreachable(exc) from exc
                    await self._drop_idle()  # the server went away: they are dead too
                finally:
                    self._put_back(conn, healthy)
        raise AssertionError("unreachable")

    async def _connect(self) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        except _LOST as exc:
            raise _unreachable(exc) from exc

    def _put_back(self, conn: asyncpg.Connection, healthy: bool) -> None:
        if self._closed or not healthy or conn.is_closed():
            conn.terminate()  # broken, or left mid-statement by a failed or cancelled read
        else:
            self._idle.append(conn)

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.terminate()

    async def close(self) -> None:
        """Close the idle connections; those in use close when their read ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await asyncio.wait_for(conn.close(), self._connect_timeout)
            except (*_LOST, asyncio.CancelledError):
                conn.terminate()


def _unreachable(exc: BaseException) -> asyncpg.InterfaceError:
    """The error a read answers 503 with (shared/errors.py), whatever asyncpg raised."""
    if isinstance(exc, asyncpg.InterfaceError):
        return exc
    return asyncpg.InterfaceError(f"the database did not answer: {type(exc).__name__}")
