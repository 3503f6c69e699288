"""A small pool of psycopg connections in autocommit mode for the API's hottest reads
(resources/employee_read.py), PostgreSQL only.

Each read is one statement, so it needs no transaction and none of SQLAlchemy's
execution layer, whose per-call cost is larger than the query's. Connections are not
pinged on checkout (a round trip per read): a read that finds its connection dead
drops every idle connection (a restart or failover took them all) and retries once on
a fresh one. Errors of the driver reach the app's handlers (503 when unreachable).

A server that stops answering is bounded like the engines' (shared/db/engine.py): the
same TCP options, and each read waits at most `read_timeout` for its answer. A read is
one single-row statement, as quick for a live server as the engines' checkout ping, so
it gets the ping's bound by default; a reused connection that misses it counts as dead
(closed, the idle ones dropped, one retry on a fresh connection, itself bounded by
`connect_timeout`), exactly as a failed ping does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy.engine import make_url

from shared.db.engine import PING_TIMEOUT_S, TCP_OPTIONS, BoundedAsyncConnection

T = TypeVar("T")


class ReadPool:
    """At most `size` connections, used one read at a time each; one per event loop."""

    def __init__(self, database_url: str, *, size: int, connect_timeout: float,
                 read_timeout: float | None = PING_TIMEOUT_S) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    async def run(self, read: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """`read(connection)`, retried once on a fresh connection if the pooled one was
        dead."""
        for attempt in (1, 2):
            async with self._slots:
                reused = bool(self._idle)
                conn = self._idle.pop() if reused else await self._connect()
                try:
                    return await read(conn)
                except psycopg.OperationalError:
                    if attempt == 2 or not (reused and conn.broken):
                        raise
                    await self._drop_idle()  # the server went away: they are dead too
                finally:
                    await self._put_back(conn)
        raise AssertionError("unreachable")

    async def _connect(self) -> BoundedAsyncConnection:
        # psycopg hands these on as libpq parameters; its types want str or int and cannot
        # tell them from its own keyword arguments.
        conn = await BoundedAsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=self._connect_timeout,  # type: ignore[arg-type]
            **TCP_OPTIONS)  # type: ignore[arg-type]
        conn.answer_timeout = self._read_timeout
        return conn

    async def _put_back(self, conn: psycopg.AsyncConnection) -> None:
        if (self._closed or conn.closed
                or conn.info.transaction_status != TransactionStatus.IDLE):
            await conn.close()  # broken, or left mid-statement by a cancelled read
        else:
            self._idle.append(conn)

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def close(self) -> None:
        """Close the idle connections; those in use close when their read ends."""
        self._closed = True
        await self._drop_idle()
