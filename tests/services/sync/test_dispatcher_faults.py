"""The long-lived dispatcher survives what would otherwise stop it for good: a result
whose delivery was deleted while it was sent, a result recorded already (a commit whose
reply was lost), a result that can never be written, many failed rounds in a row, a
loop task that ends, a kept connection that stops answering, a sequenced batch whose
write fails; it waits without spinning while its send slots are full; and a burst
worker drains the outbox. Real Redis, real database, a real HTTP receiver."""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from services.sync.events import relay as relay_module
from services.sync.webhooks import dispatcher as dispatcher_module
from services.sync.webhooks.delivery import record
from services.sync.webhooks.dispatcher import Dispatcher
from services.sync.webhooks.sender import Sender
from shared.jobs import NUDGES, nudge
from shared.models import DeliveryStatus
from shared.runtime import Runtime, open_runtime
from tests.faults.proxy import TcpProxy
from tests.fixtures.backend import on_postgres
from tests.services.sync.conftest import Receiver, Tokens, wait_for
from tests.services.sync.test_dispatcher_loop import attempts
from tests.services.sync.test_webhook_delivery import (
    deliveries,
    emitted,
    settled,
    subscribe,
)
from tests.services.sync.worlds import World
from worker.main import build_worker


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short pauses after failures; no timer round (only nudges and sends wake it)."""
    monkeypatch.setattr(dispatcher_module, "MAX_PAUSE_S", 0.2)
    monkeypatch.setattr(dispatcher_module, "RESTART_PAUSE_S", 0.1)
    monkeypatch.setattr(dispatcher_module, "IDLE_S", 60.0)


async def sent_but_unrecorded(runtime: Runtime, sender: Sender) -> Dispatcher:
    """A dispatcher that relayed, claimed and sent what is due, not yet recorded."""
    dispatcher = Dispatcher(runtime, sender)
    dispatcher.wake.set()
    await dispatcher._round()
    await asyncio.gather(*dispatcher.tasks)
    await dispatcher._drop_connection(invalidate=False)
    return dispatcher



async def _two_endpoints_and_an_event(sync_client: httpx.AsyncClient, tokens: Tokens,
                                      world: World, receiver: Receiver,
                                      committing_sessions: sessionmaker[Session],
                                      first: str, second: str) -> dict:
    """The info app subscribed at two receiver paths, and one event for both: the first
    endpoint's answer (its id)."""
    app = world.apps["info"]
    made = await subscribe(sync_client, tokens, app, receiver.url(first), ["employee.updated"])
    await subscribe(sync_client, tokens, app, receiver.url(second), ["employee.updated"])
    await emitted(committing_sessions, world, "employee.updated")
    return made

async def test_a_result_whose_delivery_was_deleted_is_not_written(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, committing_sessions: sessionmaker[Session],
) -> None:
    doomed = await _two_endpoints_and_an_event(sync_client, tokens, world, receiver,
                                      committing_sessions, "/ok", "/ok2")
    sender = Sender(allow_loopback=True)
    try:
        dispatcher = await sent_but_unrecorded(runtime, sender)
        assert len(dispatcher.results) == 2
        # The app deletes an endpoint (its deliveries go with it) while the result waits.
        r = await sync_client.delete(f"/v1/webhooks/{doomed['id']}",
                                     headers=tokens.app(world.apps["info"]))
        assert r.status_code in (200, 204), r.text
        await emitted(committing_sessions, world, "employee.updated")
        assert await dispatcher.run() == "idle"
    finally:
        await sender.close()
    assert len(receiver.to("/ok2")) == 2  # the later event went out
    rows = await deliveries(runtime)
    assert len(rows) == 2 and {r.status for r in rows} == {DeliveryStatus.SUCCEEDED}
    assert len(await attempts(runtime)) == 2  # the deleted one's result was skipped


async def test_a_result_recorded_already_is_not_written_again(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, committing_sessions: sessionmaker[Session],
) -> None:
    await _two_endpoints_and_an_event(sync_client, tokens, world, receiver,
                                      committing_sessions, "/ok", "/fail")
    sender = Sender(allow_loopback=True)
    try:
        dispatcher = await sent_but_unrecorded(runtime, sender)
        # The commit went through, its reply was lost: the results are still pending.
        await record(runtime, dispatcher.results)
        assert len(dispatcher.results) == 2
        await emitted(committing_sessions, world, "employee.updated")
        assert await dispatcher.run() == "idle"
    finally:
        await sender.close()
    assert len(receiver.to("/ok")) == 2  # the later event went out
    written = [(a.delivery_id, a.attempt) for a in await attempts(runtime)]
    assert len(written) == len(set(written)) == 4  # each result once


@pytest.mark.usefixtures("quick")
async def test_a_result_that_cannot_be_written_is_dropped_and_rounds_go_on(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, committing_sessions: sessionmaker[Session],
) -> None:
    await _two_endpoints_and_an_event(sync_client, tokens, world, receiver,
                                      committing_sessions, "/ok", "/ok2")
    sender = Sender(allow_loopback=True)
    dispatcher = await sent_but_unrecorded(runtime, sender)
    poisoned, fine = dispatcher.results
    poisoned.started = datetime.now()  # naive: its write always fails
    await emitted(committing_sessions, world, "employee.updated")
    dispatcher.start()
    try:
        await wait_for(lambda: len(receiver.to("/ok")) == len(receiver.to("/ok2")) == 2,
                       timeout=10)
        await wait_for(lambda: dispatcher.failures == 0 and not dispatcher.results)
        assert dispatcher.rounds >= 2 and all(not t.done() for t in dispatcher.loops)
    finally:
        await dispatcher.close()
        await sender.close()
    written = {(a.delivery_id, a.attempt) for a in await attempts(runtime)}
    assert (fine.delivery_id, 1) in written  # written on its own, not lost with the other
    assert (poisoned.delivery_id, 1) not in written  # dropped: sent again after its lease
    assert len(written) == 3


async def test_shutdown_records_what_it_can_of_the_last_results(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, committing_sessions: sessionmaker[Session],
) -> None:
    await _two_endpoints_and_an_event(sync_client, tokens, world, receiver,
                                      committing_sessions, "/ok", "/ok2")
    sender = Sender(allow_loopback=True)
    try:
        dispatcher = await sent_but_unrecorded(runtime, sender)
        poisoned, fine = dispatcher.results
        poisoned.started = datetime.now()  # naive: its write always fails
        await dispatcher.close()
    finally:
        await sender.close()
    assert dispatcher.results == []
    written = {(a.delivery_id, a.attempt) for a in await attempts(runtime)}
    assert written == {(fine.delivery_id, 1)}


@pytest.mark.usefixtures("quick")
async def test_many_failed_rounds_in_a_row_do_not_end_the_loop(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, committing_sessions: sessionmaker[Session],
) -> None:
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/ok"),
                    ["employee.updated"])
    sender = Sender(allow_loopback=True)
    dispatcher = Dispatcher(runtime, sender)
    dispatcher.failures = 1023  # an outage of hours
    dead = await runtime.async_engine.connect()
    await dead.close()
    dispatcher.connection = dead  # the next round fails: the 1024th in a row
    dispatcher.start()
    try:
        await wait_for(lambda: dispatcher.failures == 0 and dispatcher.rounds, timeout=10)
        await emitted(committing_sessions, world, "employee.updated")
        dispatcher.poke()
        await wait_for(lambda: receiver.to("/ok"), timeout=10)
        assert all(not t.done() for t in dispatcher.loops)
    finally:
        await dispatcher.close()
        await sender.close()


@pytest.mark.usefixtures("quick")
async def test_a_loop_task_that_ends_is_restarted(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, committing_sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/ok"),
                    ["employee.updated"])
    await runtime.redis.delete(NUDGES)
    sender = Sender(allow_loopback=True)
    dispatcher = Dispatcher(runtime, sender)
    dispatcher.start()
    try:
        await wait_for(lambda: dispatcher.rounds)
        listener, serve = dispatcher.loops
        listener.cancel()  # ended, not by close()
        serve.cancel()
        await wait_for(lambda: listener.done() and serve.done())
        await wait_for(lambda: all(t not in (listener, serve) and not t.done()
                                   for t in dispatcher.loops))
        await emitted(committing_sessions, world, "employee.updated")
        await asyncio.sleep(0.3)  # the restarted listener blocks on the list again
        await nudge(runtime.redis)
        await wait_for(lambda: receiver.to("/ok"), timeout=10)
        assert await runtime.redis.llen(NUDGES) == 0
    finally:
        await dispatcher.close()
        await sender.close()


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL through a proxy")
@pytest.mark.usefixtures("quick")
async def test_a_kept_connection_that_stops_answering_is_dropped(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings, committing_sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dispatcher_module, "ROUND_TIMEOUT_S", 2.0)
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/ok"),
                    ["employee.updated"])
    url = make_url(settings.resolved_database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    with proxy.running():
        proxied = settings.model_copy(update={"database_url": url.set(
            host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)})
        async with open_runtime(proxied, bounded_database=False) as worker_runtime:
            sender = Sender(allow_loopback=True)
            dispatcher = Dispatcher(worker_runtime, sender)
            dispatcher.start()
            try:
                await wait_for(lambda: dispatcher.rounds)
                await asyncio.sleep(0.5)
                kept = dispatcher.connection
                proxy.freeze_on(b"webhook_deliveries")  # the kept connection goes silent
                await emitted(committing_sessions, world, "employee.updated")
                dispatcher.poke()
                await wait_for(lambda: proxy.frozen, timeout=10)
                proxy.freeze_on(None)  # every other connection is fine
                rounds = dispatcher.rounds
                # The round is given up, its connection dropped, and rounds go on.
                await wait_for(lambda: dispatcher.connection is not kept
                               and dispatcher.rounds > rounds, timeout=10)
                # The server's side of the frozen session still holds its locks (the
                # event it relayed) until the server's own timeouts end it: end it now.
                proxy.down()
                proxy.up()
                dispatcher.poke()
                await wait_for(lambda: receiver.to("/ok"), timeout=15)
                await wait_for(settled(runtime, 1), timeout=10)
                await emitted(committing_sessions, world, "employee.updated")
                dispatcher.poke()
                await wait_for(lambda: len(receiver.to("/ok")) == 2, timeout=10)
            finally:
                await dispatcher.close()
                await sender.close()


async def test_the_other_results_of_a_sequenced_batch_survive_its_failed_write(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, committing_sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = world.apps["info"]
    created = await sync_client.post("/v1/webhooks", headers=tokens.app(app), json={
        "url": receiver.url("/ordered"), "events": ["employee.updated"], "ordered": True})
    assert created.status_code == 201, created.text
    await subscribe(sync_client, tokens, app, receiver.url("/plain"), ["employee.updated"])
    await emitted(committing_sessions, world, "employee.updated")

    async def database_gone(runtime, attempts) -> None:  # the sequenced write fails
        raise ConnectionError("the database went away")

    monkeypatch.setattr(dispatcher_module, "record", database_gone)
    sender = Sender(allow_loopback=True)
    try:
        dispatcher = Dispatcher(runtime, sender)
        dispatcher.wake.set()
        await dispatcher._round()
        await asyncio.gather(*dispatcher.tasks)
        await dispatcher._drop_connection(invalidate=False)
        assert len(receiver.to("/ordered")) == len(receiver.to("/plain")) == 1
        # The plain endpoint's result waits for the next round, not for its lease.
        assert [a.line for a in dispatcher.results] == [None]
        await dispatcher.run()
    finally:
        await sender.close()
    by_endpoint = {r.endpoint_id: r for r in await deliveries(runtime)}
    plain = [r for r in by_endpoint.values() if str(r.endpoint_id) != created.json()["id"]]
    assert [r.status for r in plain] == [DeliveryStatus.SUCCEEDED]


async def test_full_send_slots_wait_without_spinning(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, committing_sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dispatcher_module, "MAX_IN_FLIGHT", 1)
    receiver.pause["/held"] = 1.5
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/held"),
                    ["employee.updated"])
    await emitted(committing_sessions, world, "employee.updated")
    waits = 0

    class Counting(Dispatcher):
        async def _wait(self, **kwargs) -> None:
            nonlocal waits
            waits += 1
            await super()._wait(**kwargs)

    sender = Sender(allow_loopback=True)
    dispatcher = Counting(runtime, sender)
    dispatcher.start()
    try:
        await wait_for(lambda: dispatcher.in_flight == 1, timeout=10)
        dispatcher.poke()  # a nudge while no slot is free
        await wait_for(lambda: dispatcher.in_flight == 0, timeout=10)
    finally:
        await dispatcher.close()
        await sender.close()
    assert len(receiver.to("/held")) == 1
    assert waits <= 3  # not thousands in 1.5 s


async def test_a_burst_worker_drains_the_outbox(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings, committing_sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(relay_module, "BATCH", 2)
    monkeypatch.setattr(dispatcher_module, "CLAIM_BATCH", 2)
    receiver.pause["/ok"] = 0.3  # the queue is empty long before the outbox
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/ok"),
                    ["employee.updated"])
    for _ in range(6):
        await emitted(committing_sessions, world, "employee.updated")
    await nudge(runtime.redis)
    worker = build_worker(settings, burst=True, handle_signals=False, poll_delay=0.05,
                          cron_jobs=[])
    await asyncio.wait_for(worker.main(), 60)
    await worker.close()
    rows = await deliveries(runtime)
    assert len(rows) == 6 and {r.status for r in rows} == {DeliveryStatus.SUCCEEDED}
    assert len(receiver.to("/ok")) == 6
