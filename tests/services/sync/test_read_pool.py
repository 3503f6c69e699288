"""The sync read pool on asyncpg (services/sync/read_pool.py): what it passes to asyncpg,
and a database it cannot use answered as unreachable (503), not as a bug."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from sqlalchemy.engine import make_url

from services.sync.read_pool import ReadPool, asyncpg_dsn
from shared.config import Settings
from shared.errors import DatabaseUnreachable


def test_libpq_only_options_stay_out_of_the_asyncpg_dsn() -> None:
    dsn = asyncpg_dsn("postgresql+psycopg://koppel:s3cret@db.internal:6432/koppel"
                      "?sslmode=require&connect_timeout=5&keepalives=1&channel_binding=require"
                      "&application_name=sync")
    url = make_url(dsn)
    assert url.drivername == "postgresql"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "koppel", "s3cret", "db.internal", 6432, "koppel")
    assert dict(url.query) == {"sslmode": "require"}


@pytest.mark.postgres_only
async def test_a_database_that_refuses_the_connection_is_unreachable(settings: Settings) -> None:
    missing = make_url(settings.resolved_database_url).set(
        database=f"koppel_missing_{uuid.uuid4().hex[:8]}").render_as_string(hide_password=False)
    pool = ReadPool(missing, size=1, connect_timeout=5)
    with pytest.raises(DatabaseUnreachable):
        await pool.fetchrow("SELECT 1")
    await pool.close()


@pytest.mark.postgres_only
async def test_a_wrong_statement_is_not_taken_for_a_lost_database(settings: Settings) -> None:
    pool = ReadPool(settings.resolved_database_url, size=1, connect_timeout=5)
    try:
        assert (await pool.fetchrow("SELECT $1::int AS n", 7))["n"] == 7
        with pytest.raises(Exception) as raised:
            await pool.fetchrow("SELECT $1::int AS n", "not a number")
        assert not isinstance(raised.value, DatabaseUnreachable)
        assert (await pool.fetchrow("SELECT 2 AS n"))["n"] == 2
    finally:
        await pool.close()


@pytest.mark.postgres_only
async def test_idle_connections_the_server_ended_are_replaced(settings: Settings) -> None:
    """PostgreSQL ends the idle connections (a restart, a failover, pg_terminate_backend):
    whether a connection has already seen its socket close or has only read the server's
    goodbye (asyncpg's InternalClientError), the next reads succeed on fresh ones."""
    admin_url = make_url(settings.resolved_database_url).set(drivername="postgresql")
    for delay in (0.0, 0.001, 0.001, 0.001, 0.05):
        pool = ReadPool(settings.resolved_database_url, size=3, connect_timeout=5)
        try:
            await asyncio.gather(*(pool.fetchrow("SELECT pg_sleep(0.02)") for _ in range(3)))
            pids = [conn.get_server_pid() for conn in pool._idle]
            assert len(pids) == 3
            with psycopg.connect(admin_url.render_as_string(hide_password=False),
                                 autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid",
                              (pids,))
            await asyncio.sleep(delay)
            for _ in range(3):
                assert (await pool.fetchrow("SELECT 1 AS n"))["n"] == 1
        finally:
            await pool.close()


class _Refused(Exception):
    """What a write's checks raise inside its transaction (a 4xx)."""


@pytest.mark.postgres_only
async def test_a_transaction_commits_rolls_back_and_survives_a_lost_connection(
    settings: Settings,
) -> None:
    """The hot write's transactions (resources/employee_write.py): committed when the
    block succeeds; rolled back when it raises, its connection kept for the next one;
    begun on a fresh connection when the server ended the idle one."""
    admin_url = make_url(settings.resolved_database_url).set(
        drivername="postgresql").render_as_string(hide_password=False)
    insert = "INSERT INTO read_pool_tx VALUES ($1)"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("CREATE TABLE read_pool_tx (n int)")
    pool = ReadPool(settings.resolved_database_url, size=1, connect_timeout=5)
    try:
        async with pool.transaction(5.0) as tx:
            await tx.execute(insert, 1)
        with pytest.raises(_Refused):
            async with pool.transaction(5.0) as tx:
                await tx.execute(insert, 2)
                raise _Refused
        assert len(pool._idle) == 1  # rolled back, not closed
        kept = pool._idle[0].get_server_pid()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (kept,))
        await asyncio.sleep(0.05)
        async with pool.transaction(5.0) as tx:
            await tx.execute(insert, 3)
            assert (await tx.fetchrow("SELECT pg_backend_pid() AS pid"))["pid"] != kept
        with pytest.raises(Exception) as raised:
            async with pool.transaction(5.0) as tx:
                await tx.execute(insert, "not a number")
        assert not isinstance(raised.value, DatabaseUnreachable)
        async with pool.transaction(5.0) as tx:
            rows = await tx.fetchrow("SELECT array_agg(n ORDER BY n) AS ns FROM read_pool_tx")
        assert rows["ns"] == [1, 3]
    finally:
        await pool.close()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("DROP TABLE read_pool_tx")


@pytest.mark.postgres_only
async def test_transactions_waiting_on_a_lock_do_not_hold_up_reads(settings: Settings) -> None:
    """Writes queued on one locked row (every transaction slot taken) leave the reads
    their own slots: another tenant's read answers at once."""
    admin_url = make_url(settings.resolved_database_url).set(
        drivername="postgresql").render_as_string(hide_password=False)
    pool = ReadPool(settings.resolved_database_url, size=2, connect_timeout=5)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("CREATE TABLE read_pool_lock (n int)")
        admin.execute("INSERT INTO read_pool_lock VALUES (1)")
    holder = psycopg.connect(admin_url)
    try:
        holder.execute("SELECT n FROM read_pool_lock FOR UPDATE")  # held until rollback

        async def write() -> None:
            async with pool.transaction(5.0) as tx:
                await tx.fetchrow("SELECT n FROM read_pool_lock FOR UPDATE")

        writes = [asyncio.create_task(write()) for _ in range(3)]
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in writes)
        read = await asyncio.wait_for(pool.fetchrow("SELECT 1 AS n"), 2.0)
        assert read["n"] == 1
        holder.rollback()
        await asyncio.wait_for(asyncio.gather(*writes), 10.0)
    finally:
        holder.close()
        await pool.close()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("DROP TABLE read_pool_lock")


@pytest.mark.postgres_only
async def test_a_list_slower_than_a_one_row_read_is_answered_and_leaves_the_pool_alone(
    settings: Settings,
) -> None:
    """A page of a list may take longer than a one-row read's bound: it waits for the
    answer timeout, as the general path would; past that it answers 503 once, without a
    second run and without closing the other connections."""
    pool = ReadPool(settings.resolved_database_url, size=2, connect_timeout=5,
                    read_timeout=0.3, answer_timeout=2.0)
    try:
        await asyncio.gather(pool.fetchrow("SELECT pg_sleep(0.05)"),
                             pool.fetchrow("SELECT pg_sleep(0.05)"))
        kept = {conn.get_server_pid() for conn in pool._idle}
        assert len(kept) == 2
        rows = await pool.fetch("SELECT n FROM generate_series(1, 3) n, pg_sleep(0.6)")
        assert [row["n"] for row in rows] == [1, 2, 3]
        assert {conn.get_server_pid() for conn in pool._idle} == kept
        with pytest.raises(DatabaseUnreachable):
            await pool.fetch("SELECT pg_sleep(3)")
        assert len(pool._idle) == 1 and pool._idle[0].get_server_pid() in kept
    finally:
        await pool.close()
