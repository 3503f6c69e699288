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
restarted database) or takes longer than ROUND_TIMEOUT_S drops the connection and is
tried again after a pause (at most MAX_PAUSE_S); the results it was to record are then
written in a transaction of their own (one at a time if need be), and one that can never
be written is dropped with a warning, so that it cannot block the rounds (its delivery is
sent again after its lease). A loop task that ends by surprise is logged and restarted.
Results still in memory when the process dies are lost, not
their deliveries: an attempt claimed and never recorded is due again when its lease runs
out and is sent again with the same `webhook-id` (at least once). Sequenced attempts
(lines.py) are recorded as soon as they are sent, in a transaction of their own that
takes their lines' locks first, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
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
from shared.db.engine import BoundedAsyncConnection
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
# The longest a round may take; the kept connection's answers are bounded by it too (a
# connection that stops answering is dropped and the round counts as failed).
ROUND_TIMEOUT_S = 60.0
RESTART_PAUSE_S = 5.0  # before restarting a loop task that ended by surprise


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
        self.loops = [self._spawn(self._listen, "dispatcher.listen"),
                      self._spawn(self._serve, "dispatcher.serve")]

    def _spawn(self, loop: Callable[[], Awaitable[None]], name: str, pause: float = 0.0
               ) -> asyncio.Task:
        async def run() -> None:
            await asyncio.sleep(pause)
            await loop()

        task = asyncio.create_task(run(), name=name)
        task.add_done_callback(lambda done: self._ended(done, loop))
        return task

    def _ended(self, task: asyncio.Task, loop: Callable[[], Awaitable[None]]) -> None:
        """A loop task ended before `close`: log why and start it again after a pause.
        Restarting in place (not ending the process) keeps the worker's arq jobs running
        and costs nothing if the cause was passing; a loop that keeps dying says so in
        the log every RESTART_PAUSE_S."""
        if self.closing or task not in self.loops:
            return
        error = None if task.cancelled() else task.exception()
        log.error("dispatcher loop ended unexpectedly; restarting it", loop=task.get_name(),
                  exc_info=error)
        self.loops[self.loops.index(task)] = self._spawn(loop, task.get_name(),
                                                         RESTART_PAUSE_S)

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
                await self._failed()

    async def _failed(self) -> None:
        """After a failed round: drop the connection, record the pending results on
        their own, pause. Raises nothing but a cancellation."""
        try:
            await self._drop_connection(invalidate=True)
            await self._record_apart()
        except Exception:
            log.exception("dispatcher: handling a failed round failed")
        self.wake.set()
        await asyncio.sleep(min(0.1 * 2 ** min(self.failures, 10), MAX_PAUSE_S))

    async def _record_apart(self) -> None:
        """The results a failed round was to record, in a transaction of their own (one
        at a time if they fail together), so that one that cannot be written never
        blocks the rounds: it is dropped, and its delivery is sent again after its lease.
        While the database cannot be reached, they wait for the next round."""
        results, self.results = self.results, []
        if not results:
            return
        try:
            await asyncio.wait_for(record(self.runtime, results), ROUND_TIMEOUT_S)
            return
        except Exception as exc:  # noqa: BLE001 - one at a time below
            if _unreachable(exc):
                self.results[:0] = results
                return
        for n, attempt in enumerate(results):
            try:
                await asyncio.wait_for(record(self.runtime, [attempt]), ROUND_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - logged: dropped or kept
                if _unreachable(exc):
                    self.results[:0] = results[n:]
                    return
                log.warning("webhook result dropped: it cannot be recorded (its delivery "
                            "is sent again after its lease)", error=repr(exc),
                            delivery_id=str(attempt.delivery_id), attempt=attempt.attempt)

    async def _rounds(self, *, forever: bool) -> None:
        while not self.closing:
            room = self.in_flight < MAX_IN_FLIGHT
            if self.wake.is_set() and room:
                self.wake.clear()
                await self._bounded_round()
            elif self.tasks:
                await self._wait(wake=room)
            elif forever:
                await self.wake.wait()
            else:
                return

    async def _bounded_round(self) -> None:
        """A round within ROUND_TIMEOUT_S; one that takes longer fails (TimeoutError),
        its connection is dropped (its waits end at once: `_connect`)."""
        try:
            async with asyncio.timeout(ROUND_TIMEOUT_S):  # in this task (no new one)
                await self._round()
        except TimeoutError:
            log.warning("dispatcher round took too long; dropping its connection",
                        seconds=ROUND_TIMEOUT_S)
            raise

    async def _connect(self) -> AsyncConnection:
        """The connection kept between rounds. On PostgreSQL each of its answers is
        bounded by ROUND_TIMEOUT_S, which also makes a cancelled wait close it at once
        (shared/db/engine.py) instead of waiting for a server that no longer answers."""
        connection = await self.runtime.async_engine.connect()
        driver = (await connection.get_raw_connection()).driver_connection
        if isinstance(driver, BoundedAsyncConnection):
            driver.answer_timeout = ROUND_TIMEOUT_S
        return connection

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
                    self.connection = await self._connect()
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
            # The others first: they are recorded by the next round even if this fails.
            self.results += [a for a in claimed if a.line is None]
            lined = [a for a in claimed if a.line is not None]
            if lined:
                await record(self.runtime, lined)
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

    async def _wait(self, *, wake: bool) -> None:
        """Until a finished batch, or a nudge if there is room for a round (without
        room, a pending wake waits for a batch to finish)."""
        if not wake:
            await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
            return
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
        if connection is None:
            return
        with contextlib.suppress(Exception):
            if invalidate:
                await asyncio.wait_for(connection.invalidate(), CLOSE_RECORD_S)
                return
            driver = (await connection.get_raw_connection()).driver_connection
            if isinstance(driver, BoundedAsyncConnection):
                driver.answer_timeout = None  # back in the pool as the engine made it
            await connection.close()

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
        if not self.results:
            return
        try:  # one that cannot be written no longer takes the others with it
            await asyncio.wait_for(self._record_apart(), CLOSE_RECORD_S)
        except Exception:
            log.exception("dispatcher: recording the last results failed (their deliveries "
                          "are sent again after their lease)")
        if self.results:
            log.warning("dispatcher: results left unrecorded at shutdown (their deliveries "
                        "are sent again after their lease)", results=len(self.results))


def _unreachable(error: BaseException) -> bool:
    """Whether `error` says the database could not be reached (then a result may be
    written later), not that this result can never be written."""
    # SQLAlchemy's pool timeout (no connection free in time) is not the built-in one.
    if isinstance(error, (OSError, TimeoutError, OperationalError, InterfaceError,
                          PoolTimeout)):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated
