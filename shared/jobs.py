"""Job names and payloads: the contract between the services and the worker, and the
two enqueues that follow a commit (a nudge of the outbox relay, delivery attempts).

A nudge is not a job: it is one entry on the Redis list `NUDGES`, which every worker's
dispatcher blocks on (services/sync/webhooks/dispatcher.py). The list is kept to its
newest `NUDGES_KEPT` entries, so a burst of commits with no worker listening leaves a
few entries, not one per commit; one entry is enough to make a dispatcher relay
everything committed before it took it.

Names are "<domain>.<verb>"; jobs take ids, never objects, and open their own session.
A nudge carries the id of the request that made it; the worker puts it on the trace span
of the dispatcher round it wakes (a delivery's log lines take the id stored on its event).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import structlog
from arq.connections import ArqRedis

from shared.request_id import current_request_id

log = structlog.get_logger("koppel.jobs")

MAINTENANCE_PURGE_EXPIRED = "maintenance.purge_expired"

# How long spent or expired codes and refresh tokens are kept before they are purged:
# long enough that a replay is still recognised as one and revokes its family.
PURGE_GRACE_SECONDS = 24 * 3600

EVENTS_RELAY = "events.relay"
WEBHOOKS_DELIVER = "webhooks.deliver"
WEBHOOKS_SWEEP = "webhooks.sweep"
CONNECTIONS_RECORD_LAST_USED = "connections.record_last_used"
CONNECTIONS_EXPIRE = "connections.expire"
ACCESS_REVIEWS_COMPLETE = "access_reviews.complete"
AUDIT_CHECKPOINT = "audit.checkpoint"
IDEMPOTENCY_PURGE_EXPIRED = "idempotency.purge_expired"
DATA_ACCESS_FLUSH = "data_access.flush"
DATA_ACCESS_PURGE = "data_access.purge"


def delivery_job_id(delivery_id: object, attempt: int) -> str:
    """The arq job id of one delivery attempt: arq refuses a second job with it."""
    return f"delivery:{delivery_id}:{attempt}"


def arq_client(redis: Any) -> ArqRedis:
    """An ArqRedis on the connection pool of a redis.asyncio client."""
    return redis if isinstance(redis, ArqRedis) else ArqRedis(redis.connection_pool)


NUDGES = "koppel:relay:nudges"
NUDGES_KEPT = 64


async def nudge(redis: Any) -> None:
    """After the commit: ask a worker to relay new events now (one LPUSH of the current
    request's id, if any, on `NUDGES`; a trim only when no worker takes them). Never
    raises; if Redis is down or the process dies first, the worker's sweeper relays
    them anyway."""
    try:
        if await redis.lpush(NUDGES, current_request_id() or "") > NUDGES_KEPT:
            await redis.ltrim(NUDGES, 0, NUDGES_KEPT - 1)  # no worker is taking them
    except Exception as exc:  # noqa: BLE001 - a lost nudge only delays delivery
        log.warning("outbox nudge failed", error=type(exc).__name__)


NUDGE_TICK_S = 0.05  # deferred nudges are rounded up to this: one job per tick at most


async def nudge_at(redis: Any, at: datetime) -> None:
    """After the commit: ask the worker to run the dispatcher at `at` (the next slot of a
    rate-limited endpoint), one deferred arq job per tick however many ask (the job
    wakes the dispatcher of the worker that runs it). Never raises: the sweeper nudges
    every few seconds anyway."""
    tick = math.ceil(at.timestamp() / NUDGE_TICK_S)
    try:
        await arq_client(redis).enqueue_job(
            EVENTS_RELAY, _job_id=f"relay:at:{tick}",
            _defer_until=datetime.fromtimestamp(tick * NUDGE_TICK_S, UTC))
    except Exception as exc:  # noqa: BLE001 - a lost nudge only delays delivery
        log.warning("deferred nudge failed", error=type(exc).__name__)


async def enqueue_deliveries(
    redis: Any, due: Iterable[tuple[uuid.UUID, int, datetime | None]]
) -> int:
    """Enqueue attempt `n` of each delivery (deferred until its time, if given). arq
    refuses a job id it already holds, so enqueueing twice is harmless. Never raises:
    the sweeper enqueues whatever this could not."""
    client = arq_client(redis)
    count = 0
    for delivery_id, attempt, defer_until in due:
        job_id = delivery_job_id(delivery_id, attempt)
        try:
            job = await client.enqueue_job(
                WEBHOOKS_DELIVER, str(delivery_id), attempt,
                _job_id=job_id, _defer_until=defer_until,
            )
        except Exception as exc:  # noqa: BLE001 - the sweeper catches up
            log.warning("enqueue failed", delivery_id=str(delivery_id), error=type(exc).__name__)
            return count
        count += job is not None
    return count
