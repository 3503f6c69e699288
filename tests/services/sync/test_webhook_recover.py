"""`POST /v1/webhooks/{id}/recover`: every failed delivery since a time is sent again,
one more attempt each, one at a time in the original order; dropped ones (consent) and
older ones are not; 409 while the endpoint is disabled; safe to retry with an
`Idempotency-Key`."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from services.sync.webhooks import delivery as delivery_module
from shared.config import Settings
from shared.jobs import nudge
from shared.models import DeliveryStatus, WebhookDelivery
from shared.runtime import Runtime
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running
from tests.services.sync.test_webhook_delivery import (
    deliveries,
    emitted,
    settled,
    subscribe,
)
from tests.services.sync.worlds import World

PAUSE_S = 0.3  # the receiver's answer time while recovering


def message_id(event_id: str) -> str:
    return f"msg_{event_id.replace('-', '')}"


async def test_recover_resends_failed_deliveries_since_a_time_one_at_a_time_in_order(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
    fast_retries: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = world.apps["info"]
    auth = tokens.app(app)
    hook = await subscribe(sync_client, tokens, app, receiver.url("/down"), ["employee.updated"])
    url = f"/v1/webhooks/{hook['id']}/recover"
    receiver.down.add("/down")
    old = await emitted(committing_sessions, world, "employee.updated")
    await nudge(runtime.redis)
    enable = f"/v1/webhooks/{hook['id']}/enable"
    async with worker_running(settings):
        # Four failed attempts (fast retries): failed, and the endpoint disabled.
        await wait_for(settled(runtime, 1))
        assert (await sync_client.post(enable, headers=auth)).status_code == 200
        since = datetime.now(UTC)
        recent = [await emitted(committing_sessions, world, "employee.updated")
                  for _ in range(4)]
        await nudge(runtime.redis)
        await wait_for(settled(runtime, 5))
    rows = {str(r.event_id): r for r in await deliveries(runtime)}
    assert {r.status for r in rows.values()} == {DeliveryStatus.FAILED}
    with committing_sessions() as session, session.begin():  # consent gone: dropped
        dropped = session.get(WebhookDelivery, rows[recent[3]].id)
        dropped.status = DeliveryStatus.DROPPED
    failed_before = len(receiver.requests)

    body = {"since": since.isoformat()}
    refused = await sync_client.post(url, headers=auth, json=body)
    assert refused.status_code == 409, refused.text  # disabled: enable first
    for bad in ({"since": "2026-01-01T00:00:00"}, {"since": "yesterday"}, {}):
        assert (await sync_client.post(url, headers=auth, json=bad)).status_code == 422
    other = tokens.app(world.apps["pay"])  # another app: no such endpoint
    assert (await sync_client.post(url, headers=other, json=body)).status_code == 404
    assert (await sync_client.post(enable, headers=auth)).status_code == 200
    # A time with no UTC equivalent (near the calendar's end, with an offset) is bad
    # input too, not a 500 from the query.
    overflow = await sync_client.post(url, headers=auth,
                                      json={"since": "9999-12-31T23:59:59-01:00"})
    assert overflow.status_code == 422, overflow.text

    receiver.down.clear()
    receiver.pause["/down"] = PAUSE_S
    # The resends must succeed: fast_retries' 0.5 s send timeout leaves a loaded CI
    # machine too little room over the receiver's pause (a resend that timed out on its
    # schedule's last attempt disabled the endpoint, and the rest were never sent).
    monkeypatch.setattr(delivery_module, "SEND_TIMEOUT_S", 10.0)
    keyed = {**auth, "Idempotency-Key": "recover-1"}
    first = await sync_client.post(url, headers=keyed, json=body)
    assert first.status_code == 202, first.text
    assert first.json() == {"recovered": 3}
    replay = await sync_client.post(url, headers=keyed, json=body)  # a client's retry
    assert (replay.status_code, replay.json()) == (202, {"recovered": 3})
    async with worker_running(settings):
        await wait_for(lambda: len(receiver.requests) >= failed_before + 3)
        await wait_for(settled(runtime, 5))
    resent = receiver.requests[failed_before:]
    # Only the three failed since `since`, once each, in their original order, each sent
    # after the one before it was answered.
    assert [r.headers["webhook-id"] for r in resent] == [message_id(e) for e in recent[:3]]
    assert all(r.status == 200 for r in resent)
    for before, after in pairwise(resent):
        assert after.at - before.at >= PAUSE_S * 0.9
    rows = {str(r.event_id): r for r in await deliveries(runtime)}
    assert rows[old].status == DeliveryStatus.FAILED
    assert [rows[e].status for e in recent] == ["succeeded"] * 3 + ["dropped"]
    again = await sync_client.post(url, headers=auth, json=body)
    assert (again.status_code, again.json()) == (202, {"recovered": 0})


@pytest.mark.parametrize("ordered", [True, False])
async def test_recover_queues_nothing_when_nothing_failed(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    committing_sessions: sessionmaker[Session], ordered: bool,
) -> None:
    app = world.apps["info"]
    response = await sync_client.post(
        "/v1/webhooks", headers=tokens.app(app),
        json={"url": receiver.url("/ok"), "events": ["employee.updated"], "ordered": ordered})
    hook = response.json()
    recovered = await sync_client.post(f"/v1/webhooks/{hook['id']}/recover",
                                       headers=tokens.app(app),
                                       json={"since": "2026-01-01T00:00:00Z"})
    assert (recovered.status_code, recovered.json()) == (202, {"recovered": 0})
    with committing_sessions() as session:
        assert session.exec(select(WebhookDelivery)).all() == []
