"""An arq worker that rides out a Redis outage instead of exiting.

arq's poll loop lets any Redis error end `Worker.main()`, so a Redis restart would stop
every worker. Here a poll that cannot reach Redis is logged once, waited out with a
growing pause, and retried; nothing is lost meanwhile, because the database is the
record of what is due: once Redis answers again, the sweeper relays the events and
re-enqueues the deliveries that the outage held up.
"""

from __future__ import annotations

import asyncio

import structlog
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = structlog.get_logger("koppel.worker")

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
FIRST_PAUSE_S = 0.5
MAX_PAUSE_S = 5.0


class ResilientWorker(Worker):
    """`arq.worker.Worker` whose poll survives Redis being unreachable."""

    _pause: float = 0.0

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except UNREACHABLE as exc:
            if not self._pause:
                log.warning("Redis unreachable; the worker waits for it", error=str(exc))
            self._pause = min(max(self._pause * 2, FIRST_PAUSE_S), MAX_PAUSE_S)
            await asyncio.sleep(self._pause)
            return
        if self._pause:
            log.info("Redis reachable again; the worker goes on")
            self._pause = 0.0

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # arq takes a slot (semaphore and counter) before it marks a job in progress; an
        # error in between would keep that slot for good, so give it back.
        for job_id in job_ids:
            if self.job_counter >= self.max_jobs:
                return
            try:
                await super().start_jobs([job_id])
            except UNREACHABLE:
                self.job_counter -= 1
                self.sem.release()
                raise
