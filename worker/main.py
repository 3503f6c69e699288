"""The arq worker: outbox relay, webhook delivery and scheduled jobs.

Start it with `koppel worker`, which reads the settings and the Redis address at start
(never at import) and hands them to arq. The jobs live with the service that owns their
data, in its `jobs` module; this module only schedules them.

Every job runs with its name and id bound to its log lines, and the id of the request
that caused it (the `request_id` argument of a job a request enqueued); each delivery
attempt is logged with the request id stored on its event. With tracing on, every run
is a span.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from arq import cron
from arq.connections import RedisSettings
from arq.typing import WorkerCoroutine
from arq.worker import Worker, func

from services.auth import jobs as auth_jobs
from services.registry import jobs as registry_jobs
from services.sync import jobs as sync_jobs
from shared.config import Settings
from shared.jobs import (
    ACCESS_REVIEWS_COMPLETE,
    AUDIT_CHECKPOINT,
    CONNECTIONS_EXPIRE,
    CONNECTIONS_RECORD_LAST_USED,
    DATA_ACCESS_FLUSH,
    DATA_ACCESS_PURGE,
    EVENTS_RELAY,
    IDEMPOTENCY_PURGE_EXPIRED,
    MAINTENANCE_PURGE_EXPIRED,
    WEBHOOKS_DELIVER,
    WEBHOOKS_SWEEP,
)
from shared.logging import configure_logging
from shared.redis_embedded import resolved_redis_url
from shared.request_id import bind_request_id, current_request_id
from shared.runtime import open_runtime
from shared.tracing import (
    REQUEST_ID_ATTRIBUTE,
    job_span,
    open_tracer_provider,
    shutdown_tracing,
)
from worker.resilient import ResilientWorker

# Deliveries mostly wait on receivers: many run at once.
MAX_JOBS = 200
# arq's job timeout is final; a delivery's HTTP call times out well before it.
DELIVER_TIMEOUT_S = 60
# The relay job only wakes the dispatcher, which runs for the worker's whole life.
RELAY_TIMEOUT_S = 10
SWEEP_SECONDS = set(range(0, 60, 10))
# arq sleeps this long between queue reads: up to that much is added to a retry's or a
# rate-limited endpoint's deferred nudge (its default, 0.5 s, would be felt there). Nudges
# do not go through arq (the dispatcher blocks on their list), so no write waits on it.
POLL_DELAY_S = 0.1
LAST_USED_SECONDS = {0, 30}
# Once a minute: the job itself picks the chains whose checkpoint is due (the interval
# is a setting, KOPPEL_AUDIT_CHECKPOINT_INTERVAL).
AUDIT_CHECKPOINT_SECOND = 45
# The data-access log's flush: a read shows in the log within this interval and the
# flush's run (docs/product.md: within a minute); the purge once a day.
DATA_ACCESS_FLUSH_SECONDS = {5, 20, 35, 50}
DATA_ACCESS_PURGE_HOUR, DATA_ACCESS_PURGE_MINUTE = 3, 27
# Once a minute: consent lifetime notices and expiries (connections.expire).
EXPIRE_SECOND = 20


Job = Callable[..., Awaitable[Any]]


def _job(name: str, job: Job) -> WorkerCoroutine:
    """`job` with its log context (job, job id, request id) and, if tracing, its span."""

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], *args: Any, request_id: str | None = None,
                  **kwargs: Any) -> Any:
        tokens = structlog.contextvars.bind_contextvars(
            job=name, job_id=ctx.get("job_id"), job_try=ctx.get("job_try"))
        try:
            bind_request_id(request_id)
            provider = ctx.get("tracer_provider")
            if provider is None:
                return await job(ctx, *args, **kwargs)
            attributes = {"job": name, "job_id": ctx.get("job_id"), "job_try": ctx.get("job_try")}
            with job_span(provider, name, attributes) as span:
                try:
                    return await job(ctx, *args, **kwargs)
                finally:
                    if current_request_id():
                        span.set_attribute(REQUEST_ID_ATTRIBUTE, current_request_id())
        finally:
            bind_request_id(None)
            structlog.contextvars.reset_contextvars(**tokens)

    run.__qualname__ = name  # arq names cron jobs after it
    return run


def build_worker(settings: Settings, *, burst: bool = False, **options: Any) -> Worker:
    """An arq worker bound to the settings' Redis, with Koppel's jobs."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_logging(settings, "worker")
        stack = contextlib.AsyncExitStack()
        ctx["stack"] = stack
        # Jobs are bounded by arq's timeouts; a long statement (purging a large backlog)
        # must not be cut at the API's per-answer bound. TCP bounds still apply.
        ctx["runtime"] = await stack.enter_async_context(
            open_runtime(settings, bounded_database=False))
        ctx["tracer_provider"] = open_tracer_provider(settings, "worker")
        await sync_jobs.start(ctx, settings, stack, burst=burst)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "stack" in ctx:
            await ctx["stack"].aclose()
        if ctx.get("tracer_provider") is not None:
            await shutdown_tracing(ctx["tracer_provider"])

    crons = [
        cron(_job(MAINTENANCE_PURGE_EXPIRED, auth_jobs.purge_expired),
             name=MAINTENANCE_PURGE_EXPIRED, minute={7, 37}, run_at_startup=True),
        cron(_job(WEBHOOKS_SWEEP, sync_jobs.sweep), name=WEBHOOKS_SWEEP, second=SWEEP_SECONDS,
             run_at_startup=True, timeout=120),
        cron(_job(AUDIT_CHECKPOINT, registry_jobs.audit_checkpoint), name=AUDIT_CHECKPOINT,
             second=AUDIT_CHECKPOINT_SECOND, run_at_startup=True, timeout=300),
        cron(_job(CONNECTIONS_RECORD_LAST_USED, registry_jobs.record_last_used),
             name=CONNECTIONS_RECORD_LAST_USED, second=LAST_USED_SECONDS, timeout=120),
        cron(_job(CONNECTIONS_EXPIRE, registry_jobs.expire_connections),
             name=CONNECTIONS_EXPIRE, second=EXPIRE_SECOND, run_at_startup=True, timeout=300),
        cron(_job(ACCESS_REVIEWS_COMPLETE, registry_jobs.complete_access_reviews),
             name=ACCESS_REVIEWS_COMPLETE, second=EXPIRE_SECOND, run_at_startup=True,
             timeout=300),
        cron(_job(DATA_ACCESS_FLUSH, sync_jobs.flush_data_access), name=DATA_ACCESS_FLUSH,
             second=DATA_ACCESS_FLUSH_SECONDS, run_at_startup=True, timeout=120),
        cron(_job(DATA_ACCESS_PURGE, sync_jobs.purge_data_access), name=DATA_ACCESS_PURGE,
             hour=DATA_ACCESS_PURGE_HOUR, minute=DATA_ACCESS_PURGE_MINUTE, timeout=600),
        cron(_job(IDEMPOTENCY_PURGE_EXPIRED, registry_jobs.purge_idempotency_keys),
             name=IDEMPOTENCY_PURGE_EXPIRED, minute={17, 47}, timeout=300),
    ]
    options = {"handle_signals": True, "max_jobs": MAX_JOBS, "poll_delay": POLL_DELAY_S,
               "cron_jobs": crons, **options}
    return ResilientWorker(
        functions=[
            func(_job(EVENTS_RELAY, sync_jobs.relay), name=EVENTS_RELAY, keep_result=0,
                 max_tries=1, timeout=RELAY_TIMEOUT_S),
            func(_job(WEBHOOKS_DELIVER, sync_jobs.deliver), name=WEBHOOKS_DELIVER,
                 timeout=DELIVER_TIMEOUT_S, max_tries=3),
        ],
        redis_settings=RedisSettings.from_dsn(resolved_redis_url(settings)),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        burst=burst,
        **options,
    )
