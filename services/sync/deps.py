"""Dependencies of the sync service's endpoints: the runtime, the request's session (one
transaction, committed by this dependency before the response is sent) and the callers.

Outbox events and delivery attempts are noted on the session's unit of work
(shared/unit_of_work.py); the worker is nudged and the attempts enqueued right after the
commit, so deliveries start at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.read_pool import ReadPool
from shared.db.engine import CONNECT_TIMEOUT_S
from shared.idempotency import held_transaction
from shared.policy.dependency import Authorizer
from shared.runtime import Runtime
from shared.unit_of_work import UnitOfWork


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

# The asyncpg pool of a connection's fast paths (resources/employee_read.py,
# employee_list.py, employee_write.py, events/connection_feed.py): this many connections
# for one-row reads, as many for lists and as many for writes (services/sync/read_pool.py).
READ_POOL_SIZE = 10


def read_pool(app: FastAPI) -> ReadPool | None:
    """The app's pool for the fast paths on PostgreSQL, made on first use; None on
    SQLite, where they take the general path (the single read: the runtime's engine)."""
    state = app.state
    pool = getattr(state, "read_pool", None)
    if pool is None and state.runtime.async_engine.dialect.name == "postgresql":
        settings = state.runtime.settings
        pool = state.read_pool = ReadPool(settings.resolved_database_url,
                                          size=READ_POOL_SIZE,
                                          connect_timeout=CONNECT_TIMEOUT_S,
                                          answer_timeout=settings.database_read_timeout or None)
    return pool


async def close_read_pool(app: FastAPI) -> None:
    """Close the read pool, if one was made (when the runtime closes)."""
    pool = getattr(app.state, "read_pool", None)
    if pool is not None:
        app.state.read_pool = None
        await pool.close()


@asynccontextmanager
async def request_session(request: Request, runtime: Runtime) -> AsyncIterator[AsyncSession]:
    """One session in one transaction: committed when the block succeeds, else rolled
    back; the unit of work (the relay's nudge, delivery attempts) is flushed after the
    commit. An idempotent request's session is the middleware's, which commits with its
    answer."""
    held = held_transaction(request)
    if held is not None:
        async with held.lend() as session:
            yield session
        return
    async with runtime.async_session() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        work = UnitOfWork.detach(session)
    await work.flush(runtime.redis)


async def get_session(request: Request, runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """The request's session (`request_session`), committed before the answer is sent."""
    async with request_session(request, runtime) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


# The declared policy (shared/policy) on this service's request session.
allowed = Authorizer(get_session, with_reach=True)


def can(operation: str) -> Any:
    """The dependency of the caller authorized for `operation`, with its reach:
    `Annotated[Caller, can("area.verb")]`."""
    return Depends(allowed(operation))


def webhook_manager(operation: str) -> Any:
    """The dependency of the calling app for a `webhooks.*` operation (client
    credentials): `Annotated[AppCaller, webhook_manager("verb")]`."""
    return Depends(allowed.app(f"webhooks.{operation}"))
