"""Delivery through the real arq worker to a real HTTP receiver: Standard Webhooks
signatures, who receives what, retries, 3xx, 410, timeouts, revocation, SSRF at send."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select
from standardwebhooks.webhooks import Webhook

from services.sync.events.relay import relay_events
from services.sync.webhooks import schedule
from shared.config import Settings
from shared.jobs import nudge
from shared.models import (
    App,
    Connection,
    ConnectionStatus,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from shared.outbox import connection_event, emit
from shared.runtime import Runtime
from tests.fixtures import factories as f
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running
from tests.services.sync.worlds import World


async def subscribe(client: httpx.AsyncClient, tokens: Tokens, app: App, url: str,
                    events: list[str]) -> dict[str, Any]:
    response = await client.post("/v1/webhooks", json={"url": url, "events": events},
                                 headers=tokens.app(app))
    assert response.status_code == 201, response.text
    return response.json()


def emit_employee_event(sessions: sessionmaker[Session], world: World, type: str,
                        company: int = 0) -> str:
    with sessions() as session, session.begin():
        company_row = world.companies[company]
        extra = ({"wage_component_id": uuid.uuid4(), "action": "added"}
                 if type == "employee.payment.changed" else {})
        event = emit(session, type, world.env.id, debtor_id=company_row.debtor_id,
                     company_id=company_row.id, employee_id=company_row.id,
                     changed_fields=["last_name"], **extra)
        return str(event.id)


async def emitted(sessions: sessionmaker[Session], world: World, type: str,
                  company: int = 0) -> str:
    """`emit_employee_event` off the event loop: a worker or dispatcher running in this
    loop may hold SQLite's write lock across an await, which a blocking write in the
    loop itself would wait on until the busy timeout (a deadlock, not a slow test)."""
    return await asyncio.to_thread(emit_employee_event, sessions, world, type, company)


async def deliveries(runtime: Runtime) -> list[WebhookDelivery]:
    """Read through the async engine: a sync SQLite read would block the event loop that
    the in-process worker needs to finish its write."""
    async with runtime.async_session() as session:
        return list((await session.exec(select(WebhookDelivery))).all())


def settled(runtime: Runtime, count: int):
    async def check() -> bool:
        rows = await deliveries(runtime)
        return len(rows) >= count and all(r.status != DeliveryStatus.PENDING for r in rows)

    return check


async def test_signed_delivery_verified_by_standardwebhooks(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
) -> None:
    hook = await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/ok"),
                           ["employee.updated"])
    event_id = await emitted(committing_sessions, world, "employee.updated")
    await nudge(runtime.redis)
    async with worker_running(settings):
        await wait_for(lambda: receiver.to("/ok"))
        await wait_for(settled(runtime, 1))
    request = receiver.to("/ok")[0]
    payload = Webhook(hook["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "employee.updated"
    assert payload["timestamp"].endswith("Z")
    assert payload["data"]["changed_fields"] == ["last_name"]
    assert payload["data"]["debtor_id"] == str(world.companies[0].debtor_id)
    assert request.headers["webhook-id"] == f"msg_{event_id.replace('-', '')}"
    # A tampered body, id or an old timestamp fails the receiver's verification.
    for body, headers in [
        (request.body.replace(b"last_name", b"first_name"), request.headers),
        (request.body, {**request.headers, "webhook-id": "msg_other"}),
        (request.body, {**request.headers, "webhook-timestamp": "1000000000"}),
    ]:
        with pytest.raises(Exception, match=r"(?i)signature|timestamp"):
            Webhook(hook["secret"]).verify(body, headers)

    log = await sync_client.get(f"/v1/webhooks/{hook['id']}/deliveries",
                                headers=tokens.app(world.apps["info"]))
    [entry] = log.json()["data"]
    assert entry["status"] == "succeeded"
    [attempt] = entry["attempt_log"]
    assert attempt["status_code"] == 200 and attempt["succeeded"]
    assert attempt["latency_ms"] >= 0


async def test_only_apps_whose_connection_covers_the_event_receive_it(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
) -> None:
    types = ["employee.updated", "employee.payment.changed"]
    for name in ("info", "pay", "both"):
        await subscribe(sync_client, tokens, world.apps[name], receiver.url(f"/ok/{name}"), types)
    with committing_sessions() as session, session.begin():
        # A second connection of "both" covering the same company: still one delivery.
        other_user = f.make_user(session, world.env, companies=world.companies)
        f.make_connection(session, other_user, world.apps["both"],
                          companies=world.companies,
                          scopes=["employee.info.read", "employee.payment.read"])
    await emitted(committing_sessions, world, "employee.payment.changed")
    await emitted(committing_sessions, world, "employee.updated")
    await emitted(committing_sessions, world, "employee.updated", company=1)
    await nudge(runtime.redis)
    async with worker_running(settings):
        await wait_for(settled(runtime, 5))
    got = {name: sorted(json.loads(r.body)["type"] for r in receiver.to(f"/ok/{name}"))
           for name in ("info", "pay", "both")}
    # "info" lacks employee.payment.read and never receives employee.payment.changed;
    # the second company's event reaches only "both", whose other connection covers it.
    assert got == {
        "info": ["employee.updated"],
        "pay": ["employee.payment.changed"],
        "both": ["employee.payment.changed", "employee.updated", "employee.updated"],
    }
    assert len(await deliveries(runtime)) == 5


async def test_retries_keep_the_webhook_id_then_disable_the_endpoint(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
    fast_retries: None,
) -> None:
    app = world.apps["info"]
    hooks = {path: await subscribe(sync_client, tokens, app, receiver.url(path),
                                   ["employee.updated"])
             for path in ("/fail", "/slow", "/moved", "/gone", "/flaky")}
    await emitted(committing_sessions, world, "employee.updated")
    await nudge(runtime.redis)
    async with worker_running(settings):
        await wait_for(settled(runtime, 5))
    rows = {r.endpoint_id: r for r in await deliveries(runtime)}
    by_path = {path: rows[__import__("uuid").UUID(h["id"])] for path, h in hooks.items()}
    attempts = schedule.max_attempts()
    for path in ("/fail", "/moved"):
        requests = receiver.to(path)
        assert len(requests) == attempts, path
        assert len({r.headers["webhook-id"] for r in requests}) == 1
        for request in requests:
            Webhook(hooks[path]["secret"]).verify(request.body, request.headers)
    assert by_path["/moved"].last_error.startswith("answered 301")
    assert by_path["/slow"].last_error.startswith("timed out")
    assert by_path["/gone"].status == DeliveryStatus.FAILED
    assert len(receiver.to("/gone")) == 1
    assert by_path["/flaky"].status == DeliveryStatus.SUCCEEDED
    assert by_path["/flaky"].attempts == 2
    with committing_sessions() as session:
        endpoints = {str(e.id): e for e in session.exec(select(WebhookEndpoint))}
        n_attempts = len(session.exec(select(WebhookAttempt)).all())
    status = {path: endpoints[h["id"]].status for path, h in hooks.items()}
    assert status == {"/fail": "disabled", "/slow": "disabled", "/moved": "disabled",
                      "/gone": "disabled", "/flaky": "active"}
    assert "410" in endpoints[hooks["/gone"]["id"]].disabled_reason
    assert "failed for a day" in endpoints[hooks["/fail"]["id"]].disabled_reason
    assert n_attempts == 3 * attempts + 1 + 2
    # Nothing reached the internal address the 301 pointed at: only our receiver's paths.
    assert {r.path for r in receiver.requests} <= set(hooks)


async def test_revoked_connection_drops_waiting_deliveries_but_sends_its_revocation(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
) -> None:
    app = world.apps["info"]
    await subscribe(sync_client, tokens, app, receiver.url("/ok"),
                    ["employee.updated", "connection.created", "connection.revoked"])
    await emitted(committing_sessions, world, "employee.updated")
    with committing_sessions() as session, session.begin():
        connection = session.get(Connection, world.connections["info"].id)
        emit(session, **connection_event("connection.created", connection,
                                         changed_fields=["scopes"]))
    # Relay (deliveries now wait in the queue), then revoke before the worker sends.
    async with runtime.async_session() as session, session.begin():
        made, _, _ = await relay_events(session)
    assert made == 2
    with committing_sessions() as session, session.begin():
        connection = session.get(Connection, world.connections["info"].id)
        connection.status = ConnectionStatus.REVOKED
        emit(session, **connection_event("connection.revoked", connection,
                                         changed_fields=["status"]))
    await nudge(runtime.redis)
    async with worker_running(settings):
        await wait_for(settled(runtime, 3))
    types = [json.loads(r.body)["type"] for r in receiver.to("/ok")]
    assert types == ["connection.revoked"]
    statuses = sorted((r.type, r.status) for r in await deliveries(runtime))
    assert statuses == [("connection.created", "dropped"), ("connection.revoked", "succeeded"),
                        ("employee.updated", "dropped")]


async def test_rotation_overlap_sends_both_signatures_and_redelivery_keeps_the_id(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
) -> None:
    app = world.apps["info"]
    hook = await subscribe(sync_client, tokens, app, receiver.url("/ok"), ["employee.updated"])
    rotated = await sync_client.post(f"/v1/webhooks/{hook['id']}/rotate-secret",
                                     headers=tokens.app(app))
    new_secret = rotated.json()["secret"]
    headers = tokens.app(app)
    await emitted(committing_sessions, world, "employee.updated")
    await nudge(runtime.redis)
    async with worker_running(settings):
        await wait_for(settled(runtime, 1))
        [row] = await deliveries(runtime)
        again = await sync_client.post(
            f"/v1/webhooks/{hook['id']}/deliveries/{row.id}/redeliver", headers=headers)
        assert again.status_code == 202
        test = await sync_client.post(f"/v1/webhooks/{hook['id']}/test", headers=headers)
        assert test.status_code == 202
        await wait_for(lambda: len(receiver.to("/ok")) == 3)
        await wait_for(settled(runtime, 2))
    first, second, probe = sorted(receiver.to("/ok"), key=lambda r: json.loads(r.body)["type"])
    assert len(first.headers["webhook-signature"].split()) == 2
    for secret in (hook["secret"], new_secret):
        Webhook(secret).verify(first.body, first.headers)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert json.loads(probe.body)["type"] == "webhook.test"


async def test_an_api_write_is_delivered_right_after_its_commit(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
) -> None:
    app = world.apps["both"]
    hook = await subscribe(sync_client, tokens, app, receiver.url("/ok"), ["employee.updated"])
    with committing_sessions() as session, session.begin():
        employee_id = f.make_employee(session, world.companies[0]).id
    auth = tokens.connection(world.connections["both"], app)
    # No sweeper: only the nudge sent after the commit can start the delivery.
    async with worker_running(settings, cron_jobs=[]):
        response = await sync_client.patch(f"/v1/employees/{employee_id}",
                                           json={"first_name": "Bea"}, headers=auth)
        assert response.status_code == 200, response.text
        await wait_for(lambda: receiver.to("/ok"), timeout=10)
    request = receiver.to("/ok")[0]
    payload = Webhook(hook["secret"]).verify(request.body, request.headers)
    assert payload["data"]["employee_id"] == str(employee_id)
    assert payload["data"]["changed_fields"] == ["first_name"]
