"""The worker's dispatcher: relays new events and sends every due delivery, in bounded
rounds, as soon as a nudge arrives.

Each worker process runs one dispatcher for its whole life (`start`). Its listener
blocks on the Redis list of nudges (shared/jobs.py, BRPOP) and wakes its loop, which
runs rounds while anything may be due. Nudges coalesce: a nudge taken before a round
starts is answered by that round (every nudge follows its commit), one taken during a
round makes one more. The listener also wakes the loop every `IDLE_S` without a nudge,
and the sweeper nudges every few seconds: the outbox rows, not the nudges, are the
record of what is due, so a lost nudge only delays a delivery.

A round is one transaction on a database connection the loop keeps between rounds (no
pool checkout, so no ping per round): it records the results of the sends that finished
since the last round, relays a batch of events and claims a batch of due deliveries
(one UPDATE ... RETURNING; FOR UPDATE SKIP LOCKED on PostgreSQL, one writer at a time on
SQLite, so two dispatchers never claim the same attempt), whose sends then run
concurrently while the next round starts. A round that fails (a dead connection, a
restarted database) drops the connection and is tried again after a pause, with the
results it was to record. Results still in memory when the process dies are lost, not
their deliveries: an attempt claimed and never recorded is due again when its lease runs
out and is sent again with the same `webhook-id` (at least once). Sequenced attempts
(lines.py) are recorded as soon as they are sent, in a transaction of their own that
takes their lines' locks first, as before.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.sync.events.relay import relay_events
from services.sync.webhooks.delivery import (
    SEND_TIMEOUT_S,
    Attempt,
    claim_due,
    record,
    record_in,
    send_all,
)
from services.sync.webhooks.sender import Sender
from shared.jobs import EVENTS_RELAY, NUDGES
from shared.redis_embedded import resolved_redis_url
from shared.runtime import Runtime, redis_options
from shared.tracing import REQUEST_ID_ATTRIBUTE, job_span
from shared.unit_of_work import UnitOfWork

log = structlog.get_logger("koppel.webhooks")
CLAIM_BATCH = 200  # deliveries claimed per round
MAX_IN_FLIGHT = 1000  # deliveries being sent at once by this process
IDLE_S = 5.0  # without a nudge, a round this often
MAX_PAUSE_S = 5.0  # the longest wait after failed rounds, or while Redis is unreachable
CLOSE_WAIT_S = SEND_TIMEOUT_S + 2.0  # at shutdown, for the round and the sends in flight
CLOSE_RECORD_S = 5.0  # at shutdown, how long recording the last results may take


class Dispatcher:
    def __init__(self, runtime: Runtime, sender: Sender, tracer_provider=None) -> None:
        self.runtime, self.sender = runtime, sender
        self.tracer_provider = tracer_provider
        self.wake = asyncio.Event()
        self.in_flight = 0
        self.tasks: set[asyncio.Task] = set()
        self.results: list[Attempt] = []  # sent, to record in the next round
        self.nudged_by: str | None = None  # the request id of a nudge since the last round
        self.failures = 0
        self.rounds = 0  # committed so far
        self.connection: AsyncConnection | None = None
        self.loops: list[asyncio.Task] = []
        self.closing = False

    def start(self) -> None:
        """Listen for nudges and run rounds until `close` (the first one now)."""
        self.wake.set()
        self.loops = [asyncio.create_task(self._listen(), name="dispatcher.listen"),
                      asyncio.create_task(self._serve(), name="dispatcher.serve")]

    def poke(self) -> None:
        """Wake the loop (a deferred nudge's job, the sweeper)."""
        self.wake.set()

    async def run(self) -> str:
        """Rounds until nothing is due, nothing is in flight and every result is
        recorded (the worker runs `start` instead; tests and scripts drain with this)."""
        self.wake.set()
        try:
            await self._rounds(forever=False)
        finally:
            await self._drop_connection(invalidate=False)
        return "idle"

    async def _serve(self) -> None:
        structlog.contextvars.bind_contextvars(job=EVENTS_RELAY)
        while not self.closing:
            try:
                await self._rounds(forever=True)
            except Exception:
                self.failures += 1
                log.exception("dispatcher round failed; trying again", failures=self.failures)
                await self._drop_connection(invalidate=True)
                await asyncio.sleep(min(0.1 * 2 ** self.failures, MAX_PAUSE_S))
                self.wake.set()

    async def _rounds(self, *, forever: bool) -> None:
        while not self.closing:
            if self.wake.is_set() and self.in_flight < MAX_IN_FLIGHT:
                self.wake.clear()
                await self._round()
            elif self.tasks:
                await self._wait()
            elif forever:
                await self.wake.wait()
            else:
                return

    async def _round(self) -> None:
        """Record the last sends, relay a batch and claim a batch, in one transaction:
        the claim reuses what the relay read (audiences, endpoints), all as of it."""
        results, self.results = self.results, []
        request_id, self.nudged_by = self.nudged_by, None
        room = min(CLAIM_BATCH, MAX_IN_FLIGHT - self.in_flight)
        with job_span(self.tracer_provider, EVENTS_RELAY,
                      {"job": EVENTS_RELAY, REQUEST_ID_ATTRIBUTE: request_id}):
            try:
                if self.connection is None:
                    self.connection = await self.runtime.async_engine.connect()
                async with (self.runtime.async_session(bind=self.connection) as session,
                            session.begin()):
                    await record_in(session, results)
                    _, more, known = await relay_events(session)
                    claimed, examined = await claim_due(self.runtime, session, room, known)
            except BaseException:
                self.results[:0] = results  # not recorded: the next round tries again
                raise
            self.failures, self.rounds = 0, self.rounds + 1
            await UnitOfWork.detach(session).flush(self.runtime.redis)  # retries, lines
            # A full batch looked at (claimed, settled or put off to a rate slot) may
            # mean more is due: the next round goes on, however few were claimed.
            if more or examined == room:
                self.wake.set()
            if claimed:
                self.in_flight += len(claimed)
                task = asyncio.create_task(self._send(claimed))
                self.tasks.add(task)

    async def _send(self, claimed: list[Attempt]) -> None:
        try:
            await send_all(self.sender, claimed)
            lined = [a for a in claimed if a.line is not None]
            if lined:
                await record(self.runtime, lined)
            self.results += [a for a in claimed if a.line is None]
            ok = sum(a.result.succeeded for a in claimed)
            log.info("webhooks.deliver batch", sent=len(claimed), succeeded=ok,
                     failed=len(claimed) - ok)
        except Exception:
            log.exception("webhooks.deliver batch failed", deliveries=len(claimed))
        finally:
            self.in_flight -= len(claimed)
            task = asyncio.current_task()
            if task is not None:
                self.tasks.discard(task)
            self.wake.set()  # record the results, and there is room again

    async def _wait(self) -> None:
        """Until a nudge or a finished batch."""
        waiter = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait({waiter, *self.tasks}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    async def _listen(self) -> None:
        """Take nudges off the list as they come (waking the loop), and wake it every
        IDLE_S anyway. An unreachable Redis is waited out, with rounds meanwhile."""
        settings = self.runtime.settings
        options = {**redis_options(settings), "socket_timeout": IDLE_S + settings.redis_timeout}
        client = aioredis.Redis.from_url(resolved_redis_url(settings), **options)
        pause = 0.0
        try:
            while True:
                try:
                    taken = await client.brpop([NUDGES], timeout=IDLE_S)
                except (RedisError, OSError) as exc:
                    if not pause:
                        log.warning("Redis unreachable; the dispatcher runs on its own timer",
                                    error=str(exc))
                    pause = min(max(pause * 2, 0.5), MAX_PAUSE_S)
                    await asyncio.sleep(pause)
                    taken = None
                else:
                    if pause:
                        log.info("Redis reachable again; the dispatcher listens for nudges")
                        pause = 0.0
                if taken and taken[1] and self.nudged_by is None:
                    self.nudged_by = taken[1].decode(errors="replace")
                self.wake.set()
        finally:
            await client.aclose()

    async def _drop_connection(self, *, invalidate: bool) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await (connection.invalidate() if invalidate else connection.close())

    async def close(self) -> None:
        """At shutdown: stop listening and starting rounds (the one running ends), let
        the sends in flight finish (each within its timeout) and record every result.
        Whatever is cut off is retried after its lease."""
        self.closing = True
        self.wake.set()
        for task in self.loops[:1]:  # the listener
            task.cancel()
        if self.loops:
            await asyncio.wait(self.loops, timeout=CLOSE_WAIT_S)
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=CLOSE_WAIT_S)
        running = [*self.loops, *self.tasks]
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._drop_connection(invalidate=False)
        results, self.results = self.results, []
        if results:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(record(self.runtime, results), CLOSE_RECORD_S)
