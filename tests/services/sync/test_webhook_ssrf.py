"""The SSRF guard at send time (SECURITY line 25): an address refused since registration,
a name rebound to an internal address, every listed address; no connection is opened."""

from __future__ import annotations

import aiohttp
import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from services.sync.app import create_app
from shared.config import Settings
from shared.models import DeliveryStatus, WebhookEndpoint
from shared.runtime import Runtime
from shared.vault.columns import WEBHOOK_SECRET
from tests.services.conftest import running
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running
from tests.services.sync.test_webhook_delivery import (
    deliveries,
    emitted,
    settled,
    subscribe,
)
from tests.services.sync.test_webhooks_api import SECURITY_25
from tests.services.sync.worlds import World


async def test_refused_at_send_when_the_address_is_no_longer_allowed(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
    fast_retries: None,
) -> None:
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/ok"),
                    ["employee.updated"])
    await emitted(committing_sessions, world, "employee.updated")
    strict = settings.model_copy(update={"webhooks_allow_loopback": False})
    async with worker_running(strict):
        await wait_for(settled(runtime, 1))
    [row] = await deliveries(runtime)
    assert row.status == DeliveryStatus.FAILED
    assert row.last_error.startswith("refused by the SSRF guard")
    assert receiver.requests == []


async def test_a_name_rebound_to_an_internal_address_is_refused_at_send(
    tokens: Tokens, world: World, receiver: Receiver, runtime: Runtime, settings: Settings,
    committing_sessions: sessionmaker[Session], fast_retries: None,
) -> None:
    async def at_registration(host: str) -> list[str]:
        return ["127.0.0.1"]

    async def at_send(host: str) -> list[str]:
        return ["10.0.0.1"]  # rebound after the check at registration

    app = create_app(settings)
    app.state.ssrf_resolver = at_registration
    async with running(app) as client:
        await subscribe(client, tokens, world.apps["info"],
                        f"http://hooks.test:{receiver.port}/ok", ["employee.updated"])
    await emitted(committing_sessions, world, "employee.updated")
    async with worker_running(settings, ctx={"ssrf_resolver": at_send}):
        await wait_for(settled(runtime, 1))
    [row] = await deliveries(runtime)
    assert row.status == DeliveryStatus.FAILED
    assert "non-public address" in row.last_error
    assert receiver.requests == []


async def test_every_security_25_address_is_refused_at_send_without_a_connection(
    world: World, receiver: Receiver, runtime: Runtime, settings: Settings,
    committing_sessions: sessionmaker[Session], fast_retries: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connects: list[str] = []

    async def spy(self, req, *args, **kwargs):
        connects.append(str(req.url))
        raise AssertionError("a connection was opened")

    monkeypatch.setattr(aiohttp.BaseConnector, "connect", spy)

    async def resolver(host: str) -> list[str]:
        return ["10.1.2.3"]

    # Rows written directly, as if the addresses had changed since registration.
    urls = [*SECURITY_25, receiver.url("/ok")]
    with committing_sessions() as session, session.begin():
        for url in urls:
            endpoint = WebhookEndpoint(app_id=world.apps["info"].id, url=url,
                                       events=["employee.updated"], secret_ciphertext=b"",
                                       secret_key_id="")
            WEBHOOK_SECRET.seal(runtime.box, endpoint, b"whsec_" + b"A" * 44)
            session.add(endpoint)
    await emitted(committing_sessions, world, "employee.updated")
    strict = settings.model_copy(update={"webhooks_allow_loopback": False})
    async with worker_running(strict, ctx={"ssrf_resolver": resolver}):
        await wait_for(settled(runtime, len(urls)))
    rows = await deliveries(runtime)
    assert len(rows) == len(urls)
    for row in rows:
        assert row.status == DeliveryStatus.FAILED
        assert row.last_error.startswith("refused by the SSRF guard"), row.last_error
    assert connects == [] and receiver.requests == []
