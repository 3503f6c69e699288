"""Enqueueing the worker's jobs with arq (after the commit that made them due)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import structlog
from arq.connections import ArqRedis

from shared.jobs import WEBHOOKS_DELIVER, delivery_job_id

log = structlog.get_logger("koppel.queue")


def arq_client(redis: Any) -> ArqRedis:
    """An ArqRedis on the connection pool of a redis.asyncio client."""
    return redis if isinstance(redis, ArqRedis) else ArqRedis(redis.connection_pool)


async def enqueue_deliveries(
    redis: Any, due: Iterable[tuple[uuid.UUID, int, datetime | None]]
) -> int:
    """Enqueue attempt `n` of each delivery (deferred until its time, if given). arq
    refuses a job id it already holds, so enqueueing twice is harmless. Never raises:
    the sweeper enqueues whatever this could not."""
    client = arq_client(redis)
    count = 0
    for delivery_id, attempt, defer_until in due:
        try:
            job = await client.enqueue_job(
                WEBHOOKS_DELIVER, str(delivery_id), attempt,
                _job_id=delivery_job_id(delivery_id, attempt), _defer_until=defer_until,
            )
        except Exception as exc:  # noqa: BLE001 - the sweeper catches up
            log.warning("enqueue failed", delivery_id=str(delivery_id), error=type(exc).__name__)
            return count
        count += job is not None
    return count
