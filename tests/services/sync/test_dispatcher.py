"""The dispatcher drains a backlog in bounded batches, each committed, round after round
of its long-lived loop (no job per nudge), and sends concurrently."""

from __future__ import annotations

import json

import httpx
import pytest
from arq.constants import default_queue_name
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select
from standardwebhooks.webhooks import Webhook

from services.sync.events import relay as relay_module
from services.sync.events.relay import relay_events
from services.sync.webhooks import dispatcher as dispatcher_module
from shared.jobs import nudge
from shared.models import DeliveryStatus, Event, WebhookAttempt
from shared.runtime import Runtime
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running
from tests.services.sync.test_webhook_delivery import (
    deliveries,
    emitted,
    settled,
    subscribe,
)
from tests.services.sync.worlds import World

EVENTS = 7


async def test_relay_takes_one_bounded_batch_per_transaction(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, committing_sessions: sessionmaker[Session],
) -> None:
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/ok"),
                    ["employee.updated"])
    for _ in range(EVENTS):
        await emitted(committing_sessions, world, "employee.updated")
    async with runtime.async_session() as session, session.begin():
        made, more, _ = await relay_events(session, limit=3)
    assert (made, more) == (3, True)
    with committing_sessions() as session:
        relayed = session.exec(select(Event).where(Event.relayed_at.is_not(None))).all()
    assert len(relayed) == 3  # committed; the rest waits for the next batch
    assert len(await deliveries(runtime)) == 3


async def test_a_backlog_is_drained_in_bounded_rounds_without_a_job_per_nudge(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings, committing_sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every round may relay two events and claim two deliveries, then goes on.
    monkeypatch.setattr(relay_module, "BATCH", 2)
    monkeypatch.setattr(dispatcher_module, "CLAIM_BATCH", 2)
    claims: list[int] = []
    claim_due = dispatcher_module.claim_due

    async def counted(*args, **kwargs):
        claimed, examined = await claim_due(*args, **kwargs)
        claims.append(len(claimed))
        return claimed, examined

    monkeypatch.setattr(dispatcher_module, "claim_due", counted)
    hooks = [await subscribe(sync_client, tokens, world.apps["info"], receiver.url(path),
                             ["employee.updated"]) for path in ("/ok/1", "/ok/2")]
    for _ in range(EVENTS):
        await emitted(committing_sessions, world, "employee.updated")
    await runtime.redis.delete(default_queue_name)  # an earlier test's leftovers
    await nudge(runtime.redis)
    assert await runtime.redis.zcard(default_queue_name) == 0  # a nudge is no job
    async with worker_running(settings, cron_jobs=[]):
        await wait_for(settled(runtime, 2 * EVENTS))
        # 14 deliveries, at most 2 claimed per round: at least 7 rounds after one nudge.
        assert len([n for n in claims if n]) >= EVENTS and max(claims) <= 2
    rows = await deliveries(runtime)
    assert len(rows) == 2 * EVENTS
    assert {r.status for r in rows} == {DeliveryStatus.SUCCEEDED}
    assert {r.attempts for r in rows} == {1}
    for hook, path in zip(hooks, ("/ok/1", "/ok/2"), strict=True):
        got = receiver.to(path)
        assert len({r.headers["webhook-id"] for r in got}) == EVENTS
        for request in got:
            assert Webhook(hook["secret"]).verify(request.body, request.headers)
            assert json.loads(request.body)["type"] == "employee.updated"
    with committing_sessions() as session:
        assert len(session.exec(select(WebhookAttempt)).all()) == 2 * EVENTS
