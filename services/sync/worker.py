"""The arq worker: outbox relay, webhook delivery and scheduled jobs.

Start it with `koppel worker`, which reads the settings and the Redis address at start
(never at import) and hands them to arq.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import structlog
from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker, func

from services.sync.events.relay import relay, sweep
from services.sync.maintenance import purge_expired
from services.sync.webhooks.delivery import deliver
from shared.config import Settings
from shared.jobs import (
    CONNECTIONS_RECORD_LAST_USED,
    EVENTS_RELAY,
    MAINTENANCE_PURGE_EXPIRED,
    WEBHOOKS_DELIVER,
    WEBHOOKS_SWEEP,
)
from shared.last_used import flush_last_used
from shared.logging import configure_logging
from shared.redis_embedded import resolved_redis_url
from shared.runtime import open_runtime

log = structlog.get_logger("koppel.worker")

# Deliveries mostly wait on receivers: many run at once.
MAX_JOBS = 200
# arq's job timeout is final; a delivery's HTTP call times out well before it.
DELIVER_TIMEOUT_S = 60
SWEEP_SECONDS = set(range(0, 60, 10))
# arq sleeps this long between queue reads (its default, 0.5 s, adds up to that much per
# hop: nudge -> relay -> delivery); a read is one cheap Redis call.
POLL_DELAY_S = 0.05
LAST_USED_SECONDS = {0, 30}


async def _purge_expired(ctx: dict[str, Any]) -> dict[str, int]:
    counts = await purge_expired(ctx["runtime"])
    log.info("purged expired tokens", **counts)
    return counts


async def _relay(ctx: dict[str, Any]) -> int:
    return await relay(ctx["runtime"])


async def _deliver(ctx: dict[str, Any], delivery_id: str, attempt: int) -> str:
    return await deliver(ctx["runtime"], uuid.UUID(delivery_id), attempt,
                         resolver=ctx.get("ssrf_resolver"))


async def _sweep(ctx: dict[str, Any]) -> dict[str, int]:
    return await sweep(ctx["runtime"])


async def _record_last_used(ctx: dict[str, Any]) -> int:
    runtime = ctx["runtime"]
    return await flush_last_used(runtime.redis, runtime.async_session)


_purge_expired.__qualname__ = MAINTENANCE_PURGE_EXPIRED


def build_worker(settings: Settings, *, burst: bool = False, **options: Any) -> Worker:
    """An arq worker bound to the settings' Redis, with Koppel's jobs."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_logging(settings, "worker")
        stack = contextlib.AsyncExitStack()
        ctx["stack"] = stack
        ctx["runtime"] = await stack.enter_async_context(open_runtime(settings))

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "stack" in ctx:
            await ctx["stack"].aclose()

    crons = [
        cron(_purge_expired, name=MAINTENANCE_PURGE_EXPIRED, minute={7, 37}, run_at_startup=True),
        cron(_sweep, name=WEBHOOKS_SWEEP, second=SWEEP_SECONDS, run_at_startup=True, timeout=120),
        cron(_record_last_used, name=CONNECTIONS_RECORD_LAST_USED, second=LAST_USED_SECONDS,
             timeout=120),
    ]
    options = {"handle_signals": True, "max_jobs": MAX_JOBS, "poll_delay": POLL_DELAY_S,
               "cron_jobs": crons, **options}
    return Worker(
        functions=[
            func(_relay, name=EVENTS_RELAY, keep_result=0, max_tries=1),
            func(_deliver, name=WEBHOOKS_DELIVER, timeout=DELIVER_TIMEOUT_S, max_tries=3),
        ],
        redis_settings=RedisSettings.from_dsn(resolved_redis_url(settings)),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        burst=burst,
        **options,
    )
