"""At-least-once (SECURITY line 28): a lost nudge, a flushed Redis and a worker killed
with SIGKILL in the middle of a delivery lose nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from aiohttp import web
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from standardwebhooks.webhooks import Webhook

from shared.config import Settings
from shared.models import DeliveryStatus
from shared.runtime import Runtime
from tests.fixtures.backend import REPO_ROOT
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running
from tests.services.sync.test_webhook_delivery import (
    deliveries,
    emitted,
    settled,
    subscribe,
)
from tests.services.sync.worlds import World

KOPPEL = str(Path(sys.executable).with_name("koppel"))


async def test_lost_nudge_and_flushed_redis_still_deliver(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, redis_client: redis.Redis,
    committing_sessions: sessionmaker[Session],
) -> None:
    await subscribe(sync_client, tokens, world.apps["info"], receiver.url("/ok"),
                    ["employee.updated"])
    # The API process "died" after its commit: no nudge. Then Redis loses everything.
    await emitted(committing_sessions, world, "employee.updated")
    redis_client.flushdb()
    async with worker_running(settings):
        await wait_for(lambda: receiver.to("/ok"))
        await wait_for(settled(runtime, 1))
    assert [r.status for r in await deliveries(runtime)] == [DeliveryStatus.SUCCEEDED]


@contextlib.contextmanager
def koppel_worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [KOPPEL, "worker"], env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.mark.postgres_only
async def test_worker_killed_mid_delivery_and_redis_flushed(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World,
    runtime: Runtime, redis_client: redis.Redis, subprocess_env: dict[str, str],
    committing_sessions: sessionmaker[Session], tmp_path: Path,
) -> None:
    seen: list[tuple[dict, bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        if len(seen) == 1:
            await asyncio.sleep(120)  # the first attempt hangs until its worker dies
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
        with koppel_worker(subprocess_env, log) as first:
            await wait_for(lambda: seen, timeout=60)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        redis_client.flushdb()
        with koppel_worker(subprocess_env, log):
            await wait_for(settled(runtime, 1), timeout=90)
    finally:
        await runner.cleanup()
    [row] = await deliveries(runtime)
    assert row.status == DeliveryStatus.SUCCEEDED, log.read_text()[-3000:]
    assert len(seen) >= 2
    assert len({headers["webhook-id"] for headers, _ in seen}) == 1
    headers, body = seen[-1]
    assert Webhook(hook["secret"]).verify(body, headers)["type"] == "employee.updated"
    assert json.loads(body)["data"]["changed_fields"] == ["last_name"]
