"""One app's backlog does not hold up another app's webhooks: an ordered endpoint's
deliveries waiting behind a failing one are parked out of the claim's way, and a
rate-limited endpoint's backlog is put off to its own successive slots without a job per
delivery. Counted in dispatcher rounds and deliveries looked at, not in time."""

from __future__ import annotations

import uuid
from itertools import pairwise
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from services.sync.webhooks import dispatcher as dispatcher_module
from services.sync.webhooks.dispatcher import Dispatcher
from services.sync.webhooks.sender import Sender
from shared.models import DeliveryStatus, WebhookDelivery
from shared.outbox import emit
from shared.runtime import Runtime
from tests.services.sync.conftest import Receiver, Tokens
from tests.services.sync.test_webhook_delivery import subscribe
from tests.services.sync.worlds import World

ORDERED_BACKLOG = 300
THROTTLED_BACKLOG = 250


def emit_many(sessions: sessionmaker[Session], world: World, type: str, count: int) -> None:
    """`count` events of the first company, committed together."""
    company = world.companies[0]
    extra: dict[str, Any] = ({"wage_component_id": uuid.uuid4(), "action": "added"}
                             if type == "employee.payment.changed" else {})
    with sessions() as session, session.begin():
        for _ in range(count):
            emit(session, type, world.env.id, debtor_id=company.debtor_id,
                 company_id=company.id, employee_id=company.id,
                 changed_fields=["last_name"], **extra)


class Rounds:
    """The dispatcher's claims, round by round: (attempts claimed, deliveries looked at)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[int, int]] = []
        claim_due = dispatcher_module.claim_due

        async def counted(*args: Any, **kwargs: Any) -> tuple[list, int]:
            claimed, examined = await claim_due(*args, **kwargs)
            self.seen.append((len(claimed), examined))
            return claimed, examined

        monkeypatch.setattr(dispatcher_module, "claim_due", counted)


async def dispatch(runtime: Runtime) -> str:
    """One run of the worker's dispatcher (as one `events.relay` job), sending for real."""
    sender = Sender(allow_loopback=True)
    try:
        return await Dispatcher(runtime, sender).run()
    finally:
        await sender.close()


async def rows_of(runtime: Runtime, endpoint_id: str) -> list[WebhookDelivery]:
    async with runtime.async_session() as session:
        return list((await session.exec(select(WebhookDelivery).where(
            col(WebhookDelivery.endpoint_id) == uuid.UUID(endpoint_id)))).all())


async def test_a_backlog_of_waiting_ordered_deliveries_does_not_hold_up_another_app(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, committing_sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = await sync_client.post("/v1/webhooks", headers=tokens.app(world.apps["info"]),
                                     json={"url": receiver.url("/fail"), "ordered": True,
                                           "events": ["employee.updated"]})
    assert created.status_code == 201, created.text
    ordered = created.json()
    other = await subscribe(sync_client, tokens, world.apps["pay"], receiver.url("/ok"),
                            ["employee.payment.changed"])
    emit_many(committing_sessions, world, "employee.updated", ORDERED_BACKLOG)
    await dispatch(runtime)  # relays them; the first fails and waits for its retry
    rows = await rows_of(runtime, ordered["id"])
    assert len(rows) == ORDERED_BACKLOG
    assert {r.status for r in rows} == {DeliveryStatus.PENDING}
    head = min(rows, key=lambda r: r.id)
    assert head.attempts == 1 and head.next_attempt_at is not None  # its retry
    # The rest are parked, out of the claim's index range: not due, not walked.
    assert [r for r in rows if r.next_attempt_at is not None] == [head]
    assert len(receiver.to("/fail")) == 1

    rounds = Rounds(monkeypatch)
    emit_many(committing_sessions, world, "employee.payment.changed", 1)
    assert await dispatch(runtime) == "idle"
    assert len(receiver.to("/ok")) == 1  # the other app's, in this one run
    # The first round claimed it, having looked at it alone; none of the 299 was touched.
    assert rounds.seen[0] == (1, 1)
    assert sum(examined for _, examined in rounds.seen) == 1
    assert len(receiver.to("/fail")) == 1
    [delivered] = await rows_of(runtime, other["id"])
    assert delivered.status == DeliveryStatus.SUCCEEDED


async def test_a_throttled_backlog_does_not_hold_up_another_app_nor_flood_the_queue(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, committing_sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = await sync_client.post("/v1/webhooks", headers=tokens.app(world.apps["info"]),
                                     json={"url": receiver.url("/limited"),
                                           "events": ["employee.updated"],
                                           "max_rate_per_second": 1})
    assert created.status_code == 201, created.text
    limited = created.json()
    other = await subscribe(sync_client, tokens, world.apps["pay"], receiver.url("/ok"),
                            ["employee.payment.changed"])
    # More than a claim batch of the throttled endpoint's, then one of another app's,
    # all due at once (the throttled ones are older).
    emit_many(committing_sessions, world, "employee.updated", THROTTLED_BACKLOG)
    emit_many(committing_sessions, world, "employee.payment.changed", 1)
    queued_before = await runtime.redis.zcard("arq:queue")
    rounds = Rounds(monkeypatch)
    assert await dispatch(runtime) == "idle"
    # One run: the first round looked at a full batch of the throttled endpoint's (one
    # went, the burst of a rate of 1; the rest were put off to their slots), so the run
    # went on, and the next round sent the other app's.
    assert rounds.seen[0] == (1, dispatcher_module.CLAIM_BATCH)
    assert len(receiver.to("/ok")) == 1
    assert len(receiver.to("/limited")) <= 2
    assert len(rounds.seen) <= 4
    # The put-off deliveries hold successive slots, one a second, none twice, and no
    # attempt was counted for them.
    rows = await rows_of(runtime, limited["id"])
    waiting = sorted(r.next_attempt_at for r in rows if r.rate_slot)
    assert len(waiting) >= THROTTLED_BACKLOG - 2
    assert all(r.attempts == 0 for r in rows if r.rate_slot)
    gaps = [(b - a).total_seconds() for a, b in pairwise(waiting)]
    assert min(gaps) >= 0.999
    # No job per put-off delivery: a deferred nudge or two for the earliest slot.
    assert await runtime.redis.zcard("arq:queue") - queued_before <= 4
    [delivered] = await rows_of(runtime, other["id"])
    assert delivered.status == DeliveryStatus.SUCCEEDED
