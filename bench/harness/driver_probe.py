"""The database driver on the hot statements (issue 18, item 3): psycopg 3 as the sync
service runs it (autocommit, prepared, no pool ping) against asyncpg (its prepared
statement cache), in one process pinned to the server core, interleaved in one-second
slices, each with CONCURRENCY connections busy at once. Two statements: the busiest read
(services/sync/resources/employee_read.py, the connection, its consent and the employee
in one SELECT) and the token endpoint's client look-up by `client_id`.

Rates are statements per CPU-second of this process: the driver's own cost, which is
what a server on one core pays per request (PostgreSQL runs on the other core).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.engine import make_url

from services.sync.resources.employee_read import CONNECTION_EMPLOYEE
from shared.db.base import table_of
from shared.db.types import utcnow
from shared.models import App

CONCURRENCY = 10
SLICE_S = 1.0
_apps = table_of(App)

_PICK = """
SELECT c.id, a.client_id, e.id
FROM connections c JOIN apps a ON a.id = c.app_id
JOIN connection_companies cc ON cc.connection_id = c.id
JOIN employees e ON e.company_id = cc.company_id
WHERE c.status = 'active' AND c.environment_id = e.environment_id
LIMIT 1
"""


def _statements() -> dict[str, Any]:
    client_row = select(_apps).where(_apps.c.client_id == bindparam("client_id"))
    return {"employee_read": CONNECTION_EMPLOYEE, "client_row": client_row}


async def _slice(run: Callable[[int], Awaitable[None]]) -> tuple[int, float]:
    """(statements, CPU seconds) of CONCURRENCY workers running `run` for SLICE_S."""
    count = 0
    stop = time.perf_counter() + SLICE_S

    async def worker(index: int) -> None:
        nonlocal count
        while time.perf_counter() < stop:
            await run(index)
            count += 1

    cpu = time.process_time()
    await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
    return count, time.process_time() - cpu


async def driver(database_url: str, seconds: float) -> dict[str, float]:
    conninfo = make_url(database_url).set(drivername="postgresql")
    dsn = conninfo.render_as_string(hide_password=False)
    pg = [await psycopg.AsyncConnection.connect(dsn, autocommit=True)
          for _ in range(CONCURRENCY)]
    apg = [await asyncpg.connect(dsn) for _ in range(CONCURRENCY)]
    try:
        connection_id, client_id, employee_id = await (await pg[0].execute(_PICK)).fetchone()  # type: ignore[misc]
        params = {"connection_id": connection_id, "client_id": client_id,
                  "employee_id": employee_id, "now": utcnow()}
        result: dict[str, float] = {}
        for name, statement in _statements().items():
            pg_sql = str(statement.compile(dialect=psycopg_dialect()))
            compiled = statement.compile(dialect=asyncpg_dialect())
            apg_sql = str(compiled)
            apg_args = [params[key] for key in compiled.positiontup or []]

            async def with_psycopg(i: int, sql: str = pg_sql) -> None:
                cursor = pg[i].cursor()
                await cursor.execute(sql, params, prepare=True)
                if await cursor.fetchone() is None:
                    raise RuntimeError("the probe's statement found nothing")

            async def with_asyncpg(i: int, sql: str = apg_sql, args: list = apg_args) -> None:
                if await apg[i].fetchrow(sql, *args) is None:
                    raise RuntimeError("the probe's statement found nothing")

            totals = {"psycopg": [0, 0.0], "asyncpg": [0, 0.0]}
            for run in (with_psycopg, with_asyncpg):  # warm-up: statements prepared
                await _slice(run)
            stop = time.perf_counter() + seconds
            while time.perf_counter() < stop:
                for label, run in (("psycopg", with_psycopg), ("asyncpg", with_asyncpg)):
                    count, cpu = await _slice(run)
                    totals[label][0] += count
                    totals[label][1] += cpu
            for label, (count, cpu) in totals.items():
                result[f"{name}_{label}"] = count / cpu if cpu else 0.0
        return result
    finally:
        for conn in pg:
            await conn.close()
        for conn in apg:
            await conn.close()
