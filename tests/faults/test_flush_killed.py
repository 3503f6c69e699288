"""The worker killed in the middle of the data-access log's flush (issue 16): the flush
has taken the pending notes from Redis (renamed them to a batch) and is writing them to
the database, through a proxy that freezes the connection on the batch's insert, when
the process gets SIGKILL. A new worker applies the batch left behind: every read is in
the log, counted once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url
from sqlmodel import select

from shared.jobs import DATA_ACCESS_FLUSH, arq_client
from shared.models import DataAccess
from tests.faults.proxy import TcpProxy
from tests.faults.stack import Stack

pytestmark = pytest.mark.postgres_only

READS = (0, 0, 0, 1, 1)  # employee indexes: three reads of the first, two of the second
BATCH_INSERT = b"data_access_batches"


def _flush_now(stack: Stack) -> None:
    """Ask the running worker for a flush now (instead of waiting for its cron)."""
    async def enqueue() -> None:
        client = aioredis.Redis.from_url(stack.redis.url)
        try:
            await arq_client(client).enqueue_job(DATA_ACCESS_FLUSH)
        finally:
            await client.aclose()

    asyncio.run(enqueue())


def _logged(stack: Stack) -> dict[uuid.UUID, int]:
    with stack.sessions() as session:
        rows = session.exec(select(DataAccess)).all()
    counts: Counter[uuid.UUID] = Counter()
    for row in rows:
        counts[row.employee_id] += row.count
    return dict(counts)


def test_worker_killed_mid_flush_loses_and_doubles_nothing(stack: Stack) -> None:
    sync = stack.serve("sync")
    headers = stack.connection_headers()
    for index in READS:
        response = httpx.get(f"{sync.url}/v1/employees/{stack.employee(index)}",
                             headers=headers, timeout=30)
        assert response.status_code == 200, response.text
    redis = stack.redis.client()
    try:
        assert redis.exists("koppel:dataaccess:pending")
        real = make_url(stack.database_url)
        with TcpProxy(real.host or "127.0.0.1", real.port or 5432).running() as proxy:
            proxied = real.set(host="127.0.0.1", port=proxy.port).render_as_string(
                hide_password=False)
            first = stack.worker(name="worker-1", database_url=proxied)
            proxy.freeze_on(BATCH_INSERT)
            _flush_now(stack)
            # Taken from Redis, and stuck writing it: the notes live only in the batch.
            stack.wait(lambda: proxy.frozen >= 1, 30, "the flush's insert frozen")
            assert not redis.exists("koppel:dataaccess:pending")
            assert redis.keys("koppel:dataaccess:taking:*")
            stack.kill(first)
        assert _logged(stack) == {}

        stack.worker(name="worker-2")
        _flush_now(stack)
        expected = dict(Counter(stack.employee(i) for i in READS))
        stack.wait(lambda: _logged(stack) == expected, 30, "the left batch applied")
        stack.wait(lambda: not redis.keys("koppel:dataaccess:taking:*")
                   and not redis.smembers("koppel:dataaccess:batches"), 30,
                   "the applied batch forgotten")
        assert _logged(stack) == expected
    finally:
        redis.close()
