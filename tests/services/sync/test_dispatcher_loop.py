"""The worker's long-lived dispatcher: a nudge pushed on the Redis list wakes it at once;
a nudge that never arrives is made up by the sweeper's; results are recorded in the next
round's transaction, and a process that dies before that round loses no delivery (sent
again after the lease, failures included); a round whose connection died is tried
again; two dispatchers at once never send one attempt twice. The real arq worker in
this process, real Redis, a real HTTP receiver."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from arq.constants import default_queue_name
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select, update

from services.sync.events import relay as outbox
from services.sync.webhooks import dispatcher as dispatcher_module
from services.sync.webhooks.dispatcher import Dispatcher
from services.sync.webhooks.sender import Sender
from shared.db.types import utcnow
from shared.jobs import NUDGES, nudge
from shared.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from shared.runtime import Runtime
from tests.fixtures.backend import on_postgres
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running
from tests.services.sync.test_webhook_delivery import (
    deliveries,
    emitted,
    settled,
    subscribe,
)
from tests.services.sync.worlds import World

QUIET_S = 1.0  # long enough for a woken dispatcher to deliver on this machine
BACKLOG = 60


@pytest.fixture
def no_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dispatcher wakes only when nudged (its own timer would deliver anyway)."""
    monkeypatch.setattr(dispatcher_module, "IDLE_S", 60.0)


async def started(worker) -> Dispatcher:
    """The running worker's dispatcher, once its first round (at start) is over."""
    dispatcher = await wait_for(lambda: worker.ctx.get("dispatcher"))
    await wait_for(lambda: dispatcher.rounds and not dispatcher.wake.is_set()
                   and all(not t.done() for t in dispatcher.loops))
    await asyncio.sleep(0.1)  # the round that cleared wake has ended
    return dispatcher


async def emit_aside(sessions: sessionmaker[Session], world: World) -> None:
    """An event committed by a sync session off the event loop: on SQLite its BEGIN
    IMMEDIATE may wait for the in-process worker's round, which needs the loop to end."""
    await emitted(sessions, world, "employee.updated")


async def attempts(runtime: Runtime) -> list[WebhookAttempt]:
    async with runtime.async_session() as session:
        return list((await session.exec(select(WebhookAttempt))).all())


@pytest.mark.usefixtures("no_timer")
async def test_a_nudge_on_the_list_wakes_the_running_dispatcher(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings, committing_sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own_transactions: list[int] = []
    record = dispatcher_module.record

    async def counted(runtime, attempts):
        own_transactions.append(len(attempts))
        await record(runtime, attempts)

    monkeypatch.setattr(dispatcher_module, "record", counted)
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/ok"),
                    ["employee.updated"])
    await runtime.redis.delete(NUDGES, default_queue_name)
    async with worker_running(settings, cron_jobs=[]) as worker:
        await started(worker)
        await emit_aside(committing_sessions, world)
        await asyncio.sleep(QUIET_S)
        assert receiver.to("/ok") == []  # committed, not nudged: nothing woke it
        for round_ in range(1, 4):
            await nudge(runtime.redis)
            await wait_for(lambda n=round_: len(receiver.to("/ok")) == n, timeout=5)
            assert await runtime.redis.llen(NUDGES) == 0  # taken
            await emit_aside(committing_sessions, world)
        await nudge(runtime.redis)
        await wait_for(settled(runtime, 4))
        assert await runtime.redis.zcard(default_queue_name) == 0  # no job on the way
        assert worker.jobs_complete == 0
    assert {r.status for r in await deliveries(runtime)} == {DeliveryStatus.SUCCEEDED}
    # Every result was written by a round (none in a transaction of its own).
    assert len(await attempts(runtime)) == 4
    assert own_transactions == []


@pytest.mark.usefixtures("no_timer")
async def test_a_lost_nudge_is_made_up_by_the_sweeper(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings, committing_sessions: sessionmaker[Session],
) -> None:
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/ok"),
                    ["employee.updated"])
    await runtime.redis.delete(NUDGES)
    async with worker_running(settings, cron_jobs=[]) as worker:
        await started(worker)
        await emit_aside(committing_sessions, world)
        await nudge(runtime.redis)
        await runtime.redis.delete(NUDGES)  # lost (or taken by a worker that then died)
        await asyncio.sleep(QUIET_S)
        if receiver.to("/ok"):  # the listener took it before it was deleted: lose another
            await emit_aside(committing_sessions, world)
            await asyncio.sleep(QUIET_S)
        waiting = len(receiver.to("/ok")) + 1
        assert (await outbox.sweep(runtime))["unrelayed"] == 1  # the sweeper's job
        await wait_for(lambda: len(receiver.to("/ok")) == waiting, timeout=5)
        await wait_for(settled(runtime, waiting))


async def test_a_process_dead_before_its_next_round_loses_no_delivery(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, committing_sessions: sessionmaker[Session],
) -> None:
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/ok"),
                    ["employee.updated"])
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/fail"),
                    ["employee.updated"])
    await emitted(committing_sessions, world, "employee.updated")
    sender = Sender(allow_loopback=True)
    try:
        dead = Dispatcher(runtime, sender)
        dead.wake.set()
        await dead._round()  # relays and claims both; their sends start
        await asyncio.gather(*dead.tasks)
        assert len(dead.results) == 2  # sent, to be recorded by the next round
        await dead._drop_connection(invalidate=True)  # ... which never comes
        assert len(receiver.to("/ok")) == len(receiver.to("/fail")) == 1
        rows = await deliveries(runtime)
        assert {(r.status, r.attempts) for r in rows} == {(DeliveryStatus.PENDING, 1)}
        assert await attempts(runtime) == []
        # Their lease runs out.
        with committing_sessions() as session, session.begin():
            session.exec(update(WebhookDelivery).values(  # type: ignore[call-overload]
                next_attempt_at=utcnow() - timedelta(seconds=1)))
        assert await Dispatcher(runtime, sender).run() == "idle"
    finally:
        await sender.close()
    # The success is sent again with the same webhook-id (at least once), and recorded;
    # the failure was not lost: tried again, recorded, and its retry is scheduled.
    first, again = receiver.to("/ok")
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert len(receiver.to("/fail")) == 2
    by_url = {r.endpoint_id: r for r in await deliveries(runtime)}
    statuses = sorted((r.status, r.attempts) for r in by_url.values())
    assert statuses == [(DeliveryStatus.PENDING, 2), (DeliveryStatus.SUCCEEDED, 2)]
    [retrying] = [r for r in by_url.values() if r.status == DeliveryStatus.PENDING]
    assert retrying.next_attempt_at is not None and retrying.next_attempt_at > utcnow()
    assert sorted(a.succeeded for a in await attempts(runtime)) == [False, True]


@pytest.mark.skipif(not on_postgres(), reason="ends a PostgreSQL backend")
@pytest.mark.usefixtures("no_timer")
async def test_a_round_on_a_dead_connection_is_tried_again(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings, committing_sessions: sessionmaker[Session],
) -> None:
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/ok"),
                    ["employee.updated"])
    async with worker_running(settings, cron_jobs=[]) as worker:
        dispatcher = await started(worker)
        await emit_aside(committing_sessions, world)
        await nudge(runtime.redis)
        await wait_for(lambda: receiver.to("/ok"))
        # The connection the loop keeps between rounds (no ping) dies.
        dead = dispatcher.connection
        raw = await dead.get_raw_connection()
        pid = raw.driver_connection.info.backend_pid
        with committing_sessions() as session:
            session.exec(text("SELECT pg_terminate_backend(:pid)"),  # type: ignore[call-overload]
                         params={"pid": pid})
        await emit_aside(committing_sessions, world)
        await nudge(runtime.redis)
        await wait_for(lambda: len(receiver.to("/ok")) == 2, timeout=10)
        await wait_for(settled(runtime, 2))
        assert dispatcher.connection is not dead and dispatcher.failures == 0
    # Both recorded (the first before the failed round, or by the round tried again).
    assert len(await attempts(runtime)) == 2


async def test_two_dispatchers_at_once_send_each_attempt_once(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, committing_sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Small batches, so that the two take turns at one backlog, round after round.
    monkeypatch.setattr(outbox, "BATCH", 5)
    monkeypatch.setattr(dispatcher_module, "CLAIM_BATCH", 5)
    claimers: set[asyncio.Task | None] = set()
    claim_due = dispatcher_module.claim_due

    async def noted(*args, **kwargs):
        claimed, examined = await claim_due(*args, **kwargs)
        if claimed:
            claimers.add(asyncio.current_task())
        return claimed, examined

    monkeypatch.setattr(dispatcher_module, "claim_due", noted)
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/ok"),
                    ["employee.updated"])
    for _ in range(BACKLOG):
        await emitted(committing_sessions, world, "employee.updated")
    sender = Sender(allow_loopback=True)
    try:
        two = [Dispatcher(runtime, sender), Dispatcher(runtime, sender)]
        await asyncio.gather(*(d.run() for d in two))
    finally:
        await sender.close()
    if on_postgres():  # both claimed some (SQLite runs one writer at a time: maybe not)
        assert len(claimers) == 2
    sent = [r.headers["webhook-id"] for r in receiver.to("/ok")]
    assert len(sent) == len(set(sent)) == BACKLOG
    rows = await deliveries(runtime)
    assert {(r.status, r.attempts) for r in rows} == {(DeliveryStatus.SUCCEEDED, 1)}
    assert len(await attempts(runtime)) == BACKLOG
