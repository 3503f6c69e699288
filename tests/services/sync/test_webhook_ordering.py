"""Ordered delivery (`"ordered": true`): one customer's events one at a time in commit
order, a later one waiting for the earlier one's success or final failure, without
holding up other customers or other endpoints."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from services.sync.events.relay import relay_events
from services.sync.webhooks import schedule
from shared.config import Settings
from shared.jobs import nudge
from shared.models import WebhookDelivery
from shared.outbox import emit
from shared.runtime import Runtime
from tests.fixtures import factories as f
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running
from tests.services.sync.test_webhook_delivery import deliveries, settled
from tests.services.sync.worlds import World

FIRST_RETRY_S = 2.0  # the failed first attempt is retried this long after (+/- 20 %)


def emit_for(sessions: sessionmaker[Session], world: World, company_id: uuid.UUID,
             debtor_id: uuid.UUID) -> str:
    with sessions() as session, session.begin():
        event = emit(session, "employee.updated", world.env.id, debtor_id=debtor_id,
                     company_id=company_id, employee_id=uuid.uuid4(),
                     changed_fields=["last_name"])
        return f"msg_{event.id.hex}"


async def test_ordered_endpoint_waits_for_the_retry_of_the_customers_earlier_event(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(schedule, "RETRY_DELAYS", [FIRST_RETRY_S, 0.05, 0.05])
    app = world.apps["info"]
    with committing_sessions() as session, session.begin():  # a second customer of the app
        debtor = f.make_debtor(session, world.env)
        company = f.make_company(session, debtor)
        user = f.make_user(session, world.env, companies=[company])
        f.make_connection(session, user, app, companies=[company],
                          scopes=["employee.info.read"])
        second = (company.id, debtor.id)
    auth = tokens.app(app)
    created = await sync_client.post("/v1/webhooks", headers=auth, json={
        "url": receiver.url("/ordered"), "events": ["employee.updated"], "ordered": True})
    assert created.status_code == 201 and created.json()["ordered"] is True
    await sync_client.post("/v1/webhooks", headers=auth, json={
        "url": receiver.url("/plain"), "events": ["employee.updated"]})
    first = (world.companies[0].id, world.companies[0].debtor_id)
    e1 = emit_for(committing_sessions, world, *first)
    e2 = emit_for(committing_sessions, world, *first)
    e3 = emit_for(committing_sessions, world, *second)
    receiver.fail_once.add(("/ordered", e1))
    await nudge(runtime.redis)
    async with worker_running(settings):
        await wait_for(settled(runtime, 6))
    ordered = [(r.headers["webhook-id"], r.status) for r in receiver.to("/ordered")]
    # The first customer's: e1 fails, e1's retry succeeds, only then e2.
    assert [m for m in ordered if m[0] != e3] == [(e1, 500), (e1, 200), (e2, 200)]
    arrived = {(r.headers["webhook-id"], r.status): r.at for r in receiver.to("/ordered")}
    # The other customer's e3 did not wait for e1's retry, nor did the unordered endpoint.
    assert arrived[(e3, 200)] < arrived[(e1, 200)]
    plain = receiver.to("/plain")
    assert sorted(r.headers["webhook-id"] for r in plain) == sorted([e1, e2, e3])
    assert max(r.at for r in plain) < arrived[(e1, 200)]
    assert {json.loads(r.body)["type"] for r in receiver.requests} == {"employee.updated"}
    assert all(r.status == "succeeded" for r in await deliveries(runtime))


async def test_a_final_failure_lets_the_next_one_go(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
    fast_retries: None,
) -> None:
    app = world.apps["info"]
    auth = tokens.app(app)
    created = await sync_client.post("/v1/webhooks", headers=auth, json={
        "url": receiver.url("/fail"), "events": ["employee.updated"]})
    patched = await sync_client.patch(f"/v1/webhooks/{created.json()['id']}", headers=auth,
                                      json={"ordered": True})
    assert patched.status_code == 200 and patched.json()["ordered"] is True
    first = (world.companies[0].id, world.companies[0].debtor_id)
    e1 = emit_for(committing_sessions, world, *first)
    e2 = emit_for(committing_sessions, world, *first)
    async with runtime.async_session() as session, session.begin():
        assert (await relay_events(session))[0] == 2
    with committing_sessions() as session, session.begin():
        # e1 has two attempts (as after a redelivery): its final failure does not
        # disable the endpoint.
        row = session.exec(select(WebhookDelivery).where(
            WebhookDelivery.message_id == e1)).one()
        row.max_attempts = 2
    await nudge(runtime.redis)
    async with worker_running(settings):
        await wait_for(lambda: len(receiver.to("/fail")) >= 3)
    ids = [r.headers["webhook-id"] for r in receiver.to("/fail")]
    # Both attempts of e1 before e2's first.
    assert ids[:3] == [e1, e1, e2]
