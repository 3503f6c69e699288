"""A small pool of asyncpg connections for the API's hottest reads
(resources/employee_read.py), PostgreSQL only.

Each read is one statement, so it needs no transaction and none of SQLAlchemy's
execution layer, whose per-call cost is larger than the query's. The driver is asyncpg:
`make bench SCENARIO=driver` measures this statement at about 3.7 times as many per
CPU-second as on psycopg 3 prepared in autocommit (docs/benchmarks.md); the rest of the
services keep psycopg under SQLAlchemy. asyncpg prepares and caches each statement per
connection. Connections are not pinged on checkout (a round trip per read): a read that
finds its connection dead drops every idle connection (a restart or failover took them
all) and retries once on a fresh one. A database that cannot be reached (refused,
silent, out of connections, a wrong password) raises `DatabaseUnreachable`, which the
app answers 503 (shared/errors.py); any other error of a statement is a bug (500).

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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import ClauseElement
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import URL, make_url

from shared.db.engine import PING_TIMEOUT_S
from shared.errors import DatabaseUnreachable

# Of the URL's query, what asyncpg understands (the rest, libpq's own such as
# `connect_timeout` or `keepalives`, asyncpg would send to the server as settings, which
# refuses them): the bounds come from this pool instead.
_ASYNCPG_PARAMETERS = frozenset({
    "host", "port", "user", "password", "passfile", "database", "dbname", "service",
    "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "sslnegotiation",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "target_session_attrs",
    "krbsrvname", "gsslib",
})
# What a dead or silent connection raises: the server ended it, the socket failed, the
# bound passed.
_LOST = (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError, OSError,
         TimeoutError)


def _lost(conn: asyncpg.Connection, exc: BaseException, reused: bool) -> bool:
    """Whether `exc` says the connection is gone (not that the statement was wrong). A
    connection that PostgreSQL ended while it sat idle may first report the server's
    goodbye as an InternalClientError."""
    if isinstance(exc, _LOST):
        return True
    if isinstance(exc, asyncpg.InternalClientError):
        return reused
    return isinstance(exc, asyncpg.InterfaceError) and conn.is_closed()


def asyncpg_dsn(database_url: str) -> str:
    """The database URL as asyncpg takes it: plain `postgresql://`, libpq-only options
    left out."""
    url: URL = make_url(database_url).set(drivername="postgresql")
    url = url.set(query={k: v for k, v in url.query.items() if k in _ASYNCPG_PARAMETERS})
    return url.render_as_string(hide_password=False)


class ReadPool:
    """At most `size` connections for one-row reads, `size` for lists and `size` for
    transactions, each used by one call at a time; one pool per event loop."""

    def __init__(self, database_url: str, *, size: int, connect_timeout: float,
                 read_timeout: float | None = PING_TIMEOUT_S,
                 answer_timeout: float | None = None) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._answer_timeout = answer_timeout
        self._idle: list[asyncpg.Connection] = []
        self._slots = asyncio.Semaphore(size)
        # Transactions wait for row locks and lists scan many rows: each kind gets slots
        # of its own, so writes queued on one locked row or lists slowed by a locked table
        # never hold up the one-row reads (at most 3 x size connections).
        self._transaction_slots = asyncio.Semaphore(size)
        self._list_slots = asyncio.Semaphore(size)
        self._closed = False

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """The first row of `sql` (asyncpg's `$n` parameters), retried once on a fresh
        connection if the pooled one was dead (a one-row read past the ping's bound
        counts as dead)."""
        return await self._run("fetchrow", sql, args, self._slots, self._read_timeout)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Every row of `sql` (a page of a list), on slots of its own. It waits for its
        answer at most `answer_timeout` (the engines' bound, None: no bound), as long as
        the general path would; past it the connection is closed and the call answers
        503, without a second run. A reused connection found dead is retried once."""
        return await self._run("fetch", sql, args, self._list_slots, self._answer_timeout,
                               slow_is_dead=False)

    async def _run(self, method: str, sql: str, args: tuple[Any, ...],
                   slots: asyncio.Semaphore, bound: float | None, slow_is_dead: bool = True
                   ) -> Any:
        for attempt in (1, 2):
            async with slots:
                conn = self._take_idle()
                reused = conn is not None
                if conn is None:
                    conn = await self._connect()
                healthy = False
                try:
                    answer = await getattr(conn, method)(sql, *args, timeout=bound)
                    healthy = True
                    return answer
                except Exception as exc:
                    if not _lost(conn, exc, reused):
                        raise
                    slow = isinstance(exc, TimeoutError) and not slow_is_dead
                    if attempt == 2 or not reused or slow:
                        raise DatabaseUnreachable(type(exc).__name__) from exc
                    self._drop_idle()  # the server went away: they are dead too
                finally:
                    self._put_back(conn, healthy)
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def transaction(self, answer_timeout: float | None) -> AsyncIterator[Transaction]:
        """A connection in a transaction (the hot write, resources/employee_write.py),
        committed when the block succeeds and rolled back if it raises. Its BEGIN is
        bounded like a read and, on a reused connection that proves dead, retried once on
        a fresh one; each later statement and the COMMIT wait at most `answer_timeout`
        (None: no bound), and a connection lost on the way answers 503."""
        async with self._transaction_slots:
            conn = await self._begun()
            healthy = False
            try:
                yield Transaction(conn, answer_timeout)
                await Transaction(conn, answer_timeout).execute("COMMIT")
                healthy = True
            except Exception:
                healthy = await self._rolled_back(conn, answer_timeout)
                raise
            finally:
                self._put_back(conn, healthy)  # cancelled mid-way: closed, never reused

    async def _begun(self) -> asyncpg.Connection:
        for attempt in (1, 2):
            conn = self._take_idle()
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            try:
                await conn.execute("BEGIN", timeout=self._read_timeout)
                return conn
            except BaseException as exc:  # cancelled too: closed, never left open unpooled
                conn.terminate()
                if not isinstance(exc, Exception) or not _lost(conn, exc, reused):
                    raise
                if attempt == 2 or not reused:
                    raise DatabaseUnreachable(type(exc).__name__) from exc
                self._drop_idle()  # the server went away: they are dead too
        raise AssertionError("unreachable")

    @staticmethod
    async def _rolled_back(conn: asyncpg.Connection, answer_timeout: float | None) -> bool:
        """Roll back after a refusal (a 4xx raised in the block) or an error; whether the
        connection can be reused."""
        if conn.is_closed():
            return False
        try:
            await conn.execute("ROLLBACK", timeout=answer_timeout)
        except (*_LOST, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True

    def _take_idle(self) -> asyncpg.Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
        return None

    async def _connect(self) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        except (*_LOST, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # Refused, too many clients, a wrong password or database: not answerable now.
            raise DatabaseUnreachable(type(exc).__name__) from exc

    def _put_back(self, conn: asyncpg.Connection, healthy: bool) -> None:
        if self._closed or not healthy or conn.is_closed():
            conn.terminate()  # broken, or left mid-statement by a failed or cancelled read
        else:
            self._idle.append(conn)

    def _drop_idle(self) -> None:
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
            except (*_LOST, asyncpg.InterfaceError):
                conn.terminate()
            except asyncio.CancelledError:
                conn.terminate()
                raise


class Transaction:
    """The statements of one `ReadPool.transaction`, each bounded by its answer timeout."""

    __slots__ = ("_conn", "_timeout")

    def __init__(self, conn: asyncpg.Connection, answer_timeout: float | None) -> None:
        self._conn, self._timeout = conn, answer_timeout

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        try:
            return await self._conn.fetchrow(sql, *args, timeout=self._timeout)
        except Exception as exc:
            self._raise_lost(exc)
            raise

    async def execute(self, sql: str, *args: Any) -> None:
        try:
            await self._conn.execute(sql, *args, timeout=self._timeout)
        except Exception as exc:
            self._raise_lost(exc)
            raise

    def _raise_lost(self, exc: Exception) -> None:
        """`DatabaseUnreachable` (503) for a connection lost mid-transaction: a wrong
        statement stays what it is (500)."""
        if _lost(self._conn, exc, True):
            raise DatabaseUnreachable(type(exc).__name__) from exc


@lru_cache(maxsize=64)
def asyncpg_sql(statement: ClauseElement) -> tuple[str, tuple[str, ...]]:
    """A statement in asyncpg's form (`$n` parameters) and its parameters' order,
    compiled once per process."""
    compiled: Any = statement.compile(dialect=asyncpg_dialect())  # an SQLCompiler
    return str(compiled), tuple(compiled.positiontup or ())


class Fields:
    """An asyncpg record read by attribute, as the SQLAlchemy rows and the ORM's are."""

    __slots__ = ("_record",)

    def __init__(self, record: Any) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        try:
            return self._record[name]
        except KeyError:
            raise AttributeError(name) from None


async def fetch_fields(run: Any, statement: ClauseElement, params: dict[str, Any]
                       ) -> Fields | None:
    """The first row of `statement`, compiled once, through `run` (an asyncpg `fetchrow`:
    the read pool's, or a transaction's)."""
    sql, order = asyncpg_sql(statement)
    record = await run(sql, *(params[name] for name in order))
    return None if record is None else Fields(record)


async def fetch_rows(run: Any, statement: ClauseElement, params: dict[str, Any]
                     ) -> list[Fields]:
    """Every row of `statement`, compiled once, through `run` (an asyncpg `fetch`)."""
    sql, order = asyncpg_sql(statement)
    return [Fields(record) for record in await run(sql, *(params[name] for name in order))]
