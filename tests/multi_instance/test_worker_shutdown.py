"""Graceful shutdown of `koppel worker`: on SIGTERM it takes no new job and lets the
running ones finish (a delivery in flight completes; nothing is lost or sent twice)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from standardwebhooks.webhooks import Webhook

from shared.models import DeliveryStatus
from shared.runtime import Runtime
from tests.services.sync.conftest import Tokens, wait_for
from tests.services.sync.test_delivery_recovery import koppel_worker
from tests.services.sync.test_webhook_delivery import deliveries, emitted, subscribe
from tests.services.sync.worlds import World

RECEIVER_DELAY_S = 3.0

pytestmark = pytest.mark.postgres_only


async def test_sigterm_mid_delivery_lets_it_finish(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, runtime: Runtime,
    subprocess_env: dict[str, str], committing_sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    seen: list[tuple[dict, bytes]] = []
    answered: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        await asyncio.sleep(RECEIVER_DELAY_S)  # the worker gets SIGTERM meanwhile
        answered.append(len(seen))
        return web.Response(text="ok")

    runner = web.ServerRunner(web.Server(handle), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    log = tmp_path / "worker.log"
    try:
        hook = await subscribe(sync_client, tokens, world.apps["info"],
                               f"http://127.0.0.1:{port}/hook", ["employee.updated"])
        await emitted(committing_sessions, world, "employee.updated")
        with koppel_worker(subprocess_env, log) as worker:
            await wait_for(lambda: seen, timeout=60)
            worker.send_signal(signal.SIGTERM)
            await wait_for(lambda: worker.poll() is not None, timeout=30)
    finally:
        await runner.cleanup()
    text = log.read_text(errors="replace")
    assert worker.returncode == 0, text[-3000:]
    assert answered == [1], "the receiver's answer came back before the worker stopped"
    [row] = await deliveries(runtime)
    assert row.status == DeliveryStatus.SUCCEEDED, text[-3000:]
    assert row.attempts == 1
    assert "wait complete" in text and "0 ongoing to cancel" in text, text[-3000:]
    headers, body = seen[0]
    assert Webhook(hook["secret"]).verify(body, headers)["type"] == "employee.updated"
