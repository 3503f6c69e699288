"""Fixtures for the sync service: the app with its lifespan, signed access tokens, a real
HTTP receiver for webhooks, and the arq worker run in this process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from services.sync.app import create_app
from services.sync.webhooks import delivery as delivery_module
from services.sync.webhooks import schedule
from shared.config import Settings
from shared.events import CATALOGUE
from shared.models import App, Connection, User
from shared.runtime import Runtime
from shared.signing import Signer
from tests.fixtures import factories as f
from tests.services.conftest import running
from tests.services.sync.worlds import Data, World, data, world  # noqa: F401 - fixtures
from worker.main import build_worker

WAIT_S = 30.0


@pytest.fixture
async def sync_client(
    settings: Settings, committing_sessions: sessionmaker[Session]
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the sync service (lifespan running)."""
    async with running(create_app(settings)) as client:
        yield client


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries 50 ms apart (four attempts in all) and a 0.5 s send timeout."""
    monkeypatch.setattr(schedule, "RETRY_DELAYS", [0.05, 0.05, 0.05])
    monkeypatch.setattr(delivery_module, "SEND_TIMEOUT_S", 0.5)


@dataclass
class Tokens:
    """Signs access tokens the way the auth service issues them."""

    sessions: sessionmaker[Session]
    signer: Signer
    settings: Settings

    def _sign(self, claims: dict[str, Any]) -> str:
        now = int(time.time())
        base = {"iss": self.settings.issuer, "aud": self.settings.api_audience, "iat": now,
                "exp": now + 600}
        with self.sessions() as session, session.begin():
            return self.signer.sign(session, {**base, **claims}, alg="ES256", typ="at+jwt")

    def app(self, app: App, scopes: str = "webhooks.manage") -> dict[str, str]:
        """Headers with a client-credentials token of `app`."""
        token = self._sign({"sub": app.client_id, "client_id": app.client_id, "scope": scopes,
                            "jti": secrets.token_urlsafe(12)})
        return {"Authorization": f"Bearer {token}"}

    def connection(self, connection: Connection, app: App, scopes: str | None = None
                   ) -> dict[str, str]:
        """Headers with an access token of a third-party app's connection."""
        with self.sessions() as session, session.begin():
            user = session.get(User, connection.user_id)
            family = f.make_token_family(session, app, user, connection_id=connection.id)
            family_id = family.id
        token = self._sign({
            "sub": str(connection.user_id), "client_id": app.client_id,
            "scope": scopes if scopes is not None else " ".join(connection.scopes),
            "jti": f"{family_id}.{secrets.token_urlsafe(8)}",
            "environment_id": str(connection.environment_id),
            "connection_id": str(connection.id), "debtor_id": str(connection.debtor_id),
        })
        return {"Authorization": f"Bearer {token}"}

    def user(self, user: User, app: App, scopes: str) -> dict[str, str]:
        """Headers with a first-party app's token for `user`."""
        with self.sessions() as session, session.begin():
            family_id = f.make_token_family(session, app, user).id
        claims = {"sub": str(user.id), "client_id": app.client_id, "scope": scopes,
                  "jti": f"{family_id}.{secrets.token_urlsafe(8)}",
                  "environment_id": str(user.environment_id)}
        if user.debtor_id:
            claims["debtor_id"] = str(user.debtor_id)
        return {"Authorization": f"Bearer {self._sign(claims)}"}


@pytest.fixture
def tokens(settings: Settings, runtime: Runtime,
           committing_sessions: sessionmaker[Session]) -> Tokens:
    return Tokens(committing_sessions, Signer(runtime.box), settings)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived
    status: int = 200  # what the receiver answered


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1: `/ok` 200, `/fail` 500, `/slow` never answers in
    time, `/moved` 301 (to an internal address), `/gone` 410, `/flaky` 500 then 200.
    The first request of a (path, `webhook-id`) in `fail_once` answers 500; a path in
    `down` answers 503; a path in `pause` answers after that many seconds."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    slow_s: float = 5.0
    fail_once: set[tuple[str, str]] = field(default_factory=set)
    down: set[str] = field(default_factory=set)
    pause: dict[str, float] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(request.path, dict(request.headers), await request.read())
        self.requests.append(received)
        response = await self._answer(request, received)
        received.status = response.status
        return response

    async def _answer(self, request: web.Request, received: Received) -> web.StreamResponse:
        path = request.path
        once = (path, received.headers.get("webhook-id", ""))
        if once in self.fail_once:
            self.fail_once.discard(once)
            return web.Response(status=500)
        if path in self.down:
            return web.Response(status=503)
        if path in self.pause:
            await asyncio.sleep(self.pause[path])
        if path == "/fail":
            return web.Response(status=500, headers={"Retry-After": "0"})
        if path == "/slow":
            await asyncio.sleep(self.slow_s)
            return web.Response(status=200)
        if path == "/moved":
            return web.Response(status=301, headers={"Location": "http://10.0.0.1/admin"})
        if path == "/gone":
            return web.Response(status=410)
        if path == "/flaky" and len(self.to("/flaky")) == 1:
            return web.Response(status=500)
        return web.Response(status=200, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    server = web.Server(rec.handle)
    runner = web.ServerRunner(server, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.port = site._server.sockets[0].getsockname()[1]
    try:
        yield rec
    finally:
        await runner.cleanup()
    assert_catalogued(rec.requests)


def assert_catalogued(requests: list[Received]) -> None:
    """Every body Koppel delivered is what the event catalogue says of its type: checked
    with an independent JSON Schema validator against the schema `GET /v1/event-types`
    publishes."""
    for request in requests:
        body = json.loads(request.body)
        validator = Draft202012Validator(CATALOGUE[body["type"]].schema(),
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = [e.message for e in validator.iter_errors(body)]
        assert not errors, (body, errors)


async def wait_for(check: Callable[[], Any], timeout: float = WAIT_S, interval: float = 0.05
                   ) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def worker_running(settings: Settings, **options: Any) -> AsyncIterator[Any]:
    """The real arq worker (Koppel's jobs and crons) polling the test Redis in this process."""
    worker = build_worker(settings, handle_signals=False, poll_delay=0.05, **options)
    task = asyncio.create_task(worker.main())
    try:
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 10)
        # Let running jobs end first: close() cancels them, and a job cancelled while it
        # reports its result makes close() raise before on_shutdown has run.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*worker.tasks.values(), return_exceptions=True), 10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker.close(), 10)
