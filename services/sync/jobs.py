"""The sync service's jobs in the worker (worker/main.py schedules them): the outbox
relay, the sweeper and webhook delivery attempts; and the data-access log's flush (every
15 seconds) and retention purge (daily), services/sync/access_log.py.

Each takes arq's context, in which the worker keeps its runtime; `start` adds the
process's webhook sender and starts its dispatcher (one each per worker process).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import structlog

from services.sync import access_log
from services.sync.events import relay as outbox
from services.sync.webhooks import delivery
from services.sync.webhooks.dispatcher import Dispatcher
from services.sync.webhooks.sender import Sender
from shared.config import Settings

log = structlog.get_logger("koppel.webhooks")
BURST_DRAIN_S = 600.0  # the longest a burst worker drains the outbox before it exits


async def start(ctx: dict[str, Any], settings: Settings, stack: contextlib.AsyncExitStack,
                *, burst: bool = False) -> None:
    """Open the webhook sender and the dispatcher; `stack` closes them at shutdown. A
    burst worker (`koppel worker --burst`: run what is queued, then exit) starts no
    loop: at shutdown, once arq's queue is empty, it relays and delivers until nothing
    is left to claim and nothing is in flight."""
    # One pooled HTTP client per process; the SSRF guard still checks every send.
    ctx["sender"] = Sender(allow_loopback=settings.webhooks_allow_loopback,
                           resolver=ctx.get("ssrf_resolver"))
    stack.push_async_callback(ctx["sender"].close)
    ctx["dispatcher"] = Dispatcher(ctx["runtime"], ctx["sender"], ctx.get("tracer_provider"))
    stack.push_async_callback(ctx["dispatcher"].close)
    if burst:
        stack.push_async_callback(_drain, ctx["dispatcher"])  # before close (last in)
    else:
        ctx["dispatcher"].start()


async def _drain(dispatcher: Dispatcher) -> None:
    """Rounds until the outbox is drained, within BURST_DRAIN_S (what is left goes to
    the next worker: the outbox rows are the record)."""
    try:
        await asyncio.wait_for(dispatcher.run(), BURST_DRAIN_S)
    except Exception:
        log.exception("burst worker: draining the outbox failed; the rest is left for "
                      "the next worker")


async def relay(ctx: dict[str, Any]) -> str:
    """The job `events.relay` (a deferred nudge, shared/jobs.py `nudge_at`): wake this
    process's dispatcher."""
    ctx["dispatcher"].poke()
    return "woke the dispatcher"


async def deliver(ctx: dict[str, Any], delivery_id: str, attempt: int) -> str:
    """The job `webhooks.deliver`: one attempt of one delivery."""
    return await delivery.deliver(ctx["runtime"], uuid.UUID(delivery_id), attempt,
                                  sender=ctx["sender"])


async def sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """The job `webhooks.sweep`: report the outbox depth and nudge a dispatcher (and
    wake this process's)."""
    ctx["dispatcher"].poke()
    return await outbox.sweep(ctx["runtime"])


async def flush_data_access(ctx: dict[str, Any]) -> int:
    """The job `data_access.flush`: move the noted data accesses to the log; returns the
    log rows written."""
    runtime = ctx["runtime"]
    return await access_log.flush(runtime.redis, runtime.async_session)


async def purge_data_access(ctx: dict[str, Any]) -> int:
    """The job `data_access.purge`: delete the log's days past
    KOPPEL_DATA_ACCESS_RETENTION_DAYS; returns the rows deleted."""
    runtime = ctx["runtime"]
    return await access_log.purge(runtime.async_session,
                                  runtime.settings.data_access_retention_days)
