"""The arq worker: outbox relay, webhook delivery and scheduled jobs.

Start it with `koppel worker`, which reads the settings and the Redis address at start
(never at import) and hands them to arq.
"""

from __future__ import annotations

import contextlib
from typing import Any

import structlog
from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker

from services.sync.maintenance import purge_expired
from shared.config import Settings
from shared.jobs import MAINTENANCE_PURGE_EXPIRED
from shared.logging import configure_logging
from shared.redis_embedded import resolved_redis_url
from shared.runtime import open_runtime

log = structlog.get_logger("koppel.worker")


async def _purge_expired(ctx: dict[str, Any]) -> dict[str, int]:
    counts = await purge_expired(ctx["runtime"])
    log.info("purged expired tokens", **counts)
    return counts


_purge_expired.__qualname__ = MAINTENANCE_PURGE_EXPIRED


def build_worker(settings: Settings, *, burst: bool = False) -> Worker:
    """An arq worker bound to the settings' Redis, with Koppel's jobs."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_logging(settings, "worker")
        stack = contextlib.AsyncExitStack()
        ctx["stack"] = stack
        ctx["runtime"] = await stack.enter_async_context(open_runtime(settings))

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "stack" in ctx:
            await ctx["stack"].aclose()

    return Worker(
        functions=[],
        cron_jobs=[
            cron(_purge_expired, name=MAINTENANCE_PURGE_EXPIRED, minute={7, 37}, run_at_startup=True)
        ],
        redis_settings=RedisSettings.from_dsn(resolved_redis_url(settings)),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        burst=burst,
        handle_signals=True,
    )
