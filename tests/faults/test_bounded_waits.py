"""The client-side bounds on PostgreSQL (shared/db/engine.py), engine by engine, against a
real server behind a proxy that can fall silent (tests/faults/proxy.py):

- an engine with an `answer_timeout` (the API processes') gives up on a silent server
  after that long, closes the connection, and works again once the server answers;
- a cancelled wait on such an engine ends at once (readyz's own timeout), not after
  psycopg's attempt to cancel on a server that is not listening;
- an engine without one (the command line, migrations, bench) lets a statement run as
  long as it takes: the bound is per answer and client-side, never a statement_timeout;
- every connection carries the TCP keepalive and user-timeout options.

PostgreSQL only, like every silent-server scenario."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from shared.db.engine import (
    TCP_OPTIONS,
    NoAnswer,
    create_async_db_engine,
    create_sync_engine,
)
from tests.faults.proxy import TcpProxy

pytestmark = pytest.mark.postgres_only

BOUND_S = 1.5
SLACK_S = 1.5  # a loaded machine's scheduling, on top of a bound


@pytest.fixture
def proxy(test_database_url: str) -> Iterator[TcpProxy]:
    real = make_url(test_database_url)
    with TcpProxy(real.host or "127.0.0.1", real.port or 5432).running() as running:
        yield running


def _through(proxy: TcpProxy, url: str) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False)


def test_a_bounded_sync_engine_gives_up_on_a_silent_server_and_recovers(
    proxy: TcpProxy, test_database_url: str,
) -> None:
    engine = create_sync_engine(_through(proxy, test_database_url), answer_timeout=BOUND_S)
    try:
        with engine.connect() as conn:
            # A statement shorter than the bound is left alone.
            assert conn.execute(text("SELECT pg_sleep(0.5), 1")).one()[1] == 1
            proxy.silence()
            started = time.monotonic()
            with pytest.raises(OperationalError) as caught:
                conn.execute(text("SELECT 2"))
            took = time.monotonic() - started
        assert isinstance(caught.value.orig, NoAnswer)
        assert caught.value.connection_invalidated
        assert BOUND_S <= took < BOUND_S + SLACK_S, took
        proxy.speak()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 3")).scalar() == 3
    finally:
        engine.dispose()


async def test_a_bounded_async_engine_gives_up_and_ends_a_cancelled_wait_at_once(
    proxy: TcpProxy, test_database_url: str,
) -> None:
    engine = create_async_db_engine(_through(proxy, test_database_url),
                                    answer_timeout=BOUND_S)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
            proxy.silence()
            started = time.monotonic()
            with pytest.raises(OperationalError) as caught:
                await conn.execute(text("SELECT 2"))
            took = time.monotonic() - started
        assert isinstance(caught.value.orig, NoAnswer)
        assert BOUND_S <= took < BOUND_S + SLACK_S, took
        proxy.speak()

        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 3"))).scalar() == 3
            proxy.silence()
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(conn.execute(text("SELECT 4")), 0.3)
            took = time.monotonic() - started
        assert took < 0.3 + SLACK_S, took  # not psycopg's cancel-and-wait (up to 10 s)
        proxy.speak()
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 5"))).scalar() == 5
    finally:
        await engine.dispose()


def test_an_unbounded_engine_lets_a_long_statement_run(
    proxy: TcpProxy, test_database_url: str,
) -> None:
    engine = create_sync_engine(_through(proxy, test_database_url))  # as the CLI makes it
    try:
        with engine.connect() as conn:
            started = time.monotonic()
            assert conn.execute(text("SELECT pg_sleep(2.5), 1")).one()[1] == 1
            assert time.monotonic() - started >= 2.5
            dsn = conn.connection.driver_connection.info.dsn
        for option, value in TCP_OPTIONS.items():
            assert f"{option}={value}" in dsn, (option, dsn)
    finally:
        engine.dispose()
