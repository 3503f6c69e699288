"""Per-endpoint throttle (`max_rate_per_second`): the dispatcher sends a rate-limited
endpoint at most its rate (a token bucket in Redis, bursts up to the rate), puts the
rest off without counting an attempt, loses nothing, and does not slow other endpoints.

Checked by counts against elapsed time, in the direction that load cannot fake: a slow
machine only makes things later, so "at most burst + rate x elapsed so far" and "the
last one no sooner than (n - burst) / rate after the start" hold however busy it is."""

from __future__ import annotations

import time

import httpx
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from shared.config import Settings
from shared.jobs import nudge
from shared.runtime import Runtime
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running
from tests.services.sync.test_webhook_delivery import deliveries, emitted, settled
from tests.services.sync.worlds import World

RATE = 4
EVENTS = 12


async def test_a_rate_limited_endpoint_gets_at_most_its_rate_and_others_are_not_slowed(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
) -> None:
    auth = tokens.app(world.apps["info"])
    limited = await sync_client.post("/v1/webhooks", headers=auth, json={
        "url": receiver.url("/limited"), "events": ["employee.updated"],
        "max_rate_per_second": RATE})
    assert limited.status_code == 201 and limited.json()["max_rate_per_second"] == RATE
    for bad in (0, 1001, "fast"):
        refused = await sync_client.patch(f"/v1/webhooks/{limited.json()['id']}", headers=auth,
                                          json={"max_rate_per_second": bad})
        assert refused.status_code == 422
    await sync_client.post("/v1/webhooks", headers=auth, json={
        "url": receiver.url("/free"), "events": ["employee.updated"]})
    for _ in range(EVENTS):
        await emitted(committing_sessions, world, "employee.updated")
    await nudge(runtime.redis)
    started = time.monotonic()
    async with worker_running(settings):
        await wait_for(lambda: len(receiver.to("/free")) == EVENTS)
        # Counted within the window so far: the bucket held RATE, and refilled RATE a
        # second since the worker started (at most).
        elapsed = time.monotonic() - started
        assert len(receiver.to("/limited")) <= RATE + RATE * elapsed + 1
        assert len(receiver.to("/limited")) < EVENTS  # the free endpoint did not wait
        await wait_for(settled(runtime, 2 * EVENTS))
    arrivals = sorted(r.at for r in receiver.to("/limited"))
    assert len(arrivals) == EVENTS  # nothing lost
    # The burst goes at once, the rest one a 1/RATE s: the last no sooner than this after
    # the worker started (before the first token was taken).
    assert arrivals[-1] - started >= (EVENTS - RATE) / RATE
    # Putting a delivery off is not an attempt.
    rows = [r for r in await deliveries(runtime)]
    assert {(r.status, r.attempts) for r in rows} == {("succeeded", 1)}


async def test_the_rate_can_be_lifted(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World,
) -> None:
    auth = tokens.app(world.apps["info"])
    created = await sync_client.post("/v1/webhooks", headers=auth, json={
        "url": "http://127.0.0.1:9/hook", "events": ["employee.updated"],
        "max_rate_per_second": 10})
    hook = created.json()
    lifted = await sync_client.patch(f"/v1/webhooks/{hook['id']}", headers=auth,
                                     json={"max_rate_per_second": None})
    assert lifted.status_code == 200 and lifted.json()["max_rate_per_second"] is None
    kept = await sync_client.patch(f"/v1/webhooks/{hook['id']}", headers=auth,
                                   json={"description": "x"})
    assert kept.json()["max_rate_per_second"] is None
