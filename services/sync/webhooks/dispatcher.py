"""The worker's dispatcher: relays new events and sends every due delivery, in bounded
batches, right when nudged (the "events.relay" job).

One dispatcher runs per worker process. A nudge that arrives while it runs only wakes
it (nudges are coalesced, not queued behind each other). Each round relays one batch of
events (one transaction) and claims one batch of due deliveries (one UPDATE ...
RETURNING), whose sends then run concurrently while the next round starts; their
results are recorded a batch per transaction. A run stops after `BUDGET_S` and nudges
itself to carry on in a fresh job, so no job comes near its timeout however large the
backlog. Whatever a dead process had claimed is due again when its lease runs out, and
the sweeper's nudge picks it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from services.sync.events.relay import relay_events
from services.sync.webhooks.delivery import claim_due, send_and_record
from services.sync.webhooks.sender import Sender
from shared.jobs import nudge
from shared.runtime import Runtime
from shared.unit_of_work import UnitOfWork

log = structlog.get_logger("koppel.webhooks")
BUDGET_S = 10.0  # per run (the job's timeout is well above this plus a send's timeout)
CLAIM_BATCH = 200  # deliveries claimed per transaction
MAX_IN_FLIGHT = 1000  # deliveries being sent at once by this process


class Dispatcher:
    def __init__(self, runtime: Runtime, sender: Sender) -> None:
        self.runtime, self.sender = runtime, sender
        self.wake = asyncio.Event()
        self.running = False
        self.in_flight = 0
        self.tasks: set[asyncio.Task] = set()

    async def run(self, budget_s: float | None = None) -> str:
        """Relay and send until nothing is due (or the budget is spent: at least one
        round runs, so every run makes progress)."""
        self.wake.set()
        if self.running:
            return "woke the running dispatcher"
        self.running = True
        deadline = time.monotonic() + (BUDGET_S if budget_s is None else budget_s)
        try:
            self.wake.clear()
            await self._round()
            while time.monotonic() < deadline:
                if not self.wake.is_set() or self.in_flight >= MAX_IN_FLIGHT:
                    if not self.tasks:
                        break
                    await self._wait(deadline)
                    continue
                self.wake.clear()
                await self._round()
            if self.tasks:
                await asyncio.wait(self.tasks)
        finally:
            self.running = False
        if self.wake.is_set():
            await nudge(self.runtime.redis)  # more to do: carry on in a fresh job
            return "budget spent; continues in the next job"
        return "idle"

    async def _round(self) -> None:
        """Relay a batch and claim a batch in one transaction: the claim reuses what the
        relay read (audiences, endpoints), all as of this transaction."""
        room = min(CLAIM_BATCH, MAX_IN_FLIGHT - self.in_flight)
        async with self.runtime.async_session() as session, session.begin():
            _, more, known = await relay_events(session)
            claimed, examined = await claim_due(self.runtime, session, room, known)
        await UnitOfWork.detach(session).flush(self.runtime.redis)  # lines, rate slots
        # A full batch looked at (claimed, settled or put off to a rate slot) may mean
        # more is due: the next round goes on, however few were claimed.
        if more or examined == room:
            self.wake.set()
        if claimed:
            self.in_flight += len(claimed)
            task = asyncio.create_task(self._send(claimed))
            self.tasks.add(task)

    async def _send(self, claimed) -> None:
        try:
            counts = await send_and_record(self.runtime, self.sender, claimed)
            log.info("webhooks.deliver batch", **counts)
        except Exception:
            log.exception("webhooks.deliver batch failed", deliveries=len(claimed))
        finally:
            self.in_flight -= len(claimed)
            self.tasks.discard(asyncio.current_task())

    async def _wait(self, deadline: float) -> None:
        """Until a nudge, a finished batch or the deadline."""
        waiter = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait({waiter, *self.tasks}, timeout=max(0.0, deadline - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    async def close(self) -> None:
        """At shutdown: stop sending (claimed deliveries are retried after their lease)."""
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
