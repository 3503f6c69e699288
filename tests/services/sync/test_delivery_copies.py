"""An event's body is serialized once and shared by all of its deliveries (issue 18,
item 6): stored once per event as compact JSON text, claimed as one bytes object for
every endpoint, and still signed per delivery with each endpoint's own secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Text, cast
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select
from standardwebhooks.webhooks import Webhook

from services.sync.events.relay import message, relay_events
from services.sync.webhooks.delivery import claim_due
from services.sync.webhooks.signing import secret_key, signature, signed_headers
from shared.jobs import nudge
from shared.models import DeliveryStatus, Event, WebhookDelivery
from shared.runtime import Runtime
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running
from tests.services.sync.test_webhook_delivery import (
    deliveries,
    emitted,
    settled,
    subscribe,
)
from tests.services.sync.worlds import World


def compact(payload: Any) -> bytes:
    """The bytes a delivery has always been sent as: its payload's compact JSON."""
    return json.dumps(payload, separators=(",", ":")).encode()


async def test_an_events_deliveries_share_one_body_each_signed_with_its_own_secret(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings, committing_sessions: sessionmaker[Session],
) -> None:
    paths = ("/ok/1", "/ok/2", "/ok/3")
    hooks = [await subscribe(sync_client, tokens, world.apps["info"], receiver.url(path),
                             ["employee.updated"]) for path in paths]
    event_ids = [await emitted(committing_sessions, world, "employee.updated")
                 for _ in range(2)]
    async with runtime.async_session() as session:  # rolled back: the worker sends below
        made, _, known = await relay_events(session)
        assert made == 6
        # Stored once per event as its compact JSON text (the same for each endpoint).
        stored = (await session.exec(select(
            WebhookDelivery.event_id, cast(WebhookDelivery.payload, Text).label("text")))).all()
        events = {e.id: e for e in (await session.exec(select(Event))).all()}
        for event_id, text in stored:
            assert event_id is not None
            assert text.encode() == compact(message(events[event_id]))
        claimed, examined = await claim_due(runtime, session, 100, known)
        await session.rollback()
    assert examined == 6 and len(claimed) == 6
    by_message: dict[str, list] = {}
    for attempt in claimed:
        by_message.setdefault(attempt.message_id, []).append(attempt)
    assert len(by_message) == 2
    for same in by_message.values():
        assert len(same) == 3
        assert all(a.body is same[0].body for a in same)  # one bytes object, not 3 copies
        assert len({a.keys.hmac[0] for a in same}) == 3  # each endpoint's own key
    await nudge(runtime.redis)
    async with worker_running(settings):
        await wait_for(settled(runtime, 6))
    assert {r.status for r in await deliveries(runtime)} == {DeliveryStatus.SUCCEEDED}
    bodies = set()
    for hook, path in zip(hooks, paths, strict=True):
        got = receiver.to(path)
        assert {r.headers["webhook-id"] for r in got} == {
            f"msg_{e.replace('-', '')}" for e in event_ids}
        for request in got:
            bodies.add((request.headers["webhook-id"], request.body))
            assert Webhook(hook["secret"]).verify(request.body, request.headers)
            for other in hooks:  # another endpoint's secret does not verify it
                if other is not hook:
                    with pytest.raises(Exception, match=r"(?i)signature"):
                        Webhook(other["secret"]).verify(request.body, request.headers)
    assert len(bodies) == 2  # per event, the same bytes at every endpoint
    for _, body in bodies:
        assert body == compact(json.loads(body))


async def test_a_payload_written_through_the_orm_is_still_sent_as_compact_json(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings, committing_sessions: sessionmaker[Session],
) -> None:
    """A test message (and `endpoint.disabled`) is stored by the ORM with spaces; its
    body is the compact JSON it always was, not the stored text."""
    app = world.apps["info"]
    hook = await subscribe(sync_client, tokens, app, receiver.url("/ok"), ["employee.updated"])
    sent = await sync_client.post(f"/v1/webhooks/{hook['id']}/test", headers=tokens.app(app))
    assert sent.status_code == 202
    async with runtime.async_session() as session:
        [(payload, text)] = (await session.exec(select(
            WebhookDelivery.payload, cast(WebhookDelivery.payload, Text).label("text")).where(
                col(WebhookDelivery.type) == "webhook.test"))).all()
    assert text.encode() != compact(payload)  # stored with spaces
    await nudge(runtime.redis)
    async with worker_running(settings):
        await wait_for(lambda: receiver.to("/ok"))
        await wait_for(settled(runtime, 1))
    [request] = receiver.to("/ok")
    assert request.body == compact(payload)
    assert Webhook(hook["secret"]).verify(request.body, request.headers)


def test_signed_headers_sign_the_same_bytes_with_every_key() -> None:
    """Put together once for all keys, the signed bytes are still `id.timestamp.body`:
    each `v1,` signature is the HMAC-SHA256 of them under its key, in the keys' order,
    and a `v1a,` one verifies with its Ed25519 public key."""
    body = compact({"type": "employee.updated", "data": {"n": 1}})
    secrets = ["whsec_" + base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2)]
    keys = [secret_key(s) for s in secrets]
    now = int(time.time())
    headers = signed_headers("msg_1", now, body, keys)
    signed = f"msg_1.{now}.".encode() + body
    assert headers["webhook-signature"].split() == [
        "v1," + base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode()
        for k in keys]
    assert headers["webhook-signature"].split()[0] == signature(keys[0], "msg_1", now, body)
    assert {k: v for k, v in headers.items() if k != "webhook-signature"} == {
        "webhook-id": "msg_1", "webhook-timestamp": str(now),
        "content-type": "application/json", "user-agent": "Koppel-Webhooks/1"}
    for secret in secrets:
        assert Webhook(secret).verify(body, headers)
    private = Ed25519PrivateKey.generate()
    [v1a] = signed_headers("msg_1", now, body, [], [private])[
        "webhook-signature"].split()
    assert v1a.startswith("v1a,")
    private.public_key().verify(base64.b64decode(v1a.removeprefix("v1a,")), signed)
