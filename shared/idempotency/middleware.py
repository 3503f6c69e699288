"""The `Idempotency-Key` middleware of registry and sync (create_service_app adds it).

A POST or PATCH with the header flows like this:

1. The key is checked (1 to 255 printable ASCII, else 400) and the body read; the
   fingerprint is the SHA-256 of method, path (with its query) and body; the owner is
   who calls (`keys.owner_of`). Without a bearer credential the key is ignored: the
   route answers 401 anyway.
2. A lock in Redis on (owner, key) marks the request as running: a second request with
   the same key meanwhile answers 409.
3. A committed answer of the owner for the key (younger than 24 hours) is replayed with
   `Idempotent-Replayed: true` when the fingerprint matches, else 422; the route does
   not run.
4. Otherwise the middleware opens the request's session and lends it to the service's
   `get_session` (`held_transaction`): the route runs in it, but its commit waits for the
   answer. A 2xx answer is sealed by the vault and added to the same transaction, which
   then commits: the work and its answer are kept together or not at all. The unique
   (owner, key) of the table stops a second commit of the same key even if the lock has
   run out. An answer that is not 2xx is not kept (the key can be used again), though
   what the route did commits as it would without a key.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import structlog
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import KoppelError, problem
from shared.idempotency import store
from shared.idempotency.keys import (
    HEADER,
    METHODS,
    REPLAYED_HEADER,
    fingerprint,
    owner_of,
    valid_key,
)
from shared.unit_of_work import UnitOfWork

log = structlog.get_logger("koppel.idempotency")
_SCOPE_KEY = "koppel.idempotency"
# How long a request holds its key; past it the table's unique key still stops a
# second commit.
LOCK_MS = 120_000
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class HeldTransaction:
    """The request's session, opened by the middleware and lent to `get_session`: the
    route's work stays uncommitted until the middleware has its answer."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.completed = False

    @contextlib.asynccontextmanager
    async def lend(self) -> AsyncIterator[AsyncSession]:
        """What `get_session` yields: flushed when the route succeeds, rolled back when
        it raises."""
        try:
            yield self.session
            await self.session.flush()
            self.completed = True
        except BaseException:
            await self.session.rollback()
            raise


def held_transaction(request: Request) -> HeldTransaction | None:
    """The held transaction of an idempotent request, or None (the service's
    `get_session` then opens and commits its own)."""
    return request.scope.get(_SCOPE_KEY)


def _problem(status: int, slug: str, title: str, detail: str,
             headers: dict[str, str] | None = None) -> Any:
    return problem(status, slug, title, detail, headers=headers)


class _Captured:
    """The route's answer, held back until its transaction has committed."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.streamed = False

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
            self.streamed = self.streamed or message.get("more_body", False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for message in self.messages:
            await send(message)


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class IdempotencyMiddleware:
    """Pure ASGI middleware; innermost of the app's, so the problem answers of the
    routes reach it as answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = None
        if scope["type"] == "http" and scope["method"] in METHODS:
            raw = dict(scope.get("headers", [])).get(HEADER.lower().encode())
        if raw is None:
            await self.app(scope, receive, send)
            return
        key = valid_key(raw)
        if key is None:
            await _problem(400, "invalid-idempotency-key", "Invalid idempotency key",
                           f"{HEADER} must be 1 to 255 printable ASCII characters"
                           )(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return
        request = Request(scope)
        runtime = request.app.state.runtime
        try:
            owner = await owner_of(request, runtime.keyring.digest_key)
        except KoppelError as exc:  # the status of the token could not be checked
            await problem(exc.status, exc.slug, exc.title, exc.detail,
                          headers=exc.headers or None)(scope, receive, send)
            return
        sent = False

        async def replay_body() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        if owner is None:
            await self.app(scope, replay_body, send)
            return
        target = scope["path"]
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        request_key = _Request(owner, key, fingerprint(scope["method"], target, body))
        answer = await request_key.run(self.app, scope, replay_body, runtime)
        await answer(scope, receive, send)


class _Request:
    """One idempotent request: its owner, key and fingerprint."""

    def __init__(self, owner: str, key: str, fingerprint: str) -> None:
        self.owner, self.key, self.fingerprint = owner, key, fingerprint
        digest = hashlib.sha256(key.encode()).hexdigest()
        self.lock_key = f"koppel:idempotency:{owner}:{digest}"

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive, runtime: Any) -> Any:
        """The answer to send: a problem, a replay, or the route's own."""
        token = secrets.token_hex(16)
        try:
            locked = await runtime.redis.set(self.lock_key, token, nx=True, px=LOCK_MS)
        except (RedisError, OSError):
            return _problem(503, "unavailable", "Service unavailable",
                            "the idempotency key cannot be checked now; try again",
                            {"Retry-After": "1"})
        if not locked:
            return _problem(409, "idempotency-key-in-use", "Request in progress",
                            f"a request with this {HEADER} is still running; retry later")
        try:
            return await self._claimed(app, scope, receive, runtime)
        finally:
            try:
                await runtime.redis.eval(_RELEASE, 1, self.lock_key, token)
            except (RedisError, OSError):
                log.warning("idempotency lock not released; it runs out by itself")

    async def _claimed(self, app: ASGIApp, scope: Scope, receive: Receive, runtime: Any
                       ) -> Any:
        try:
            stored = await store.find(runtime.async_session, self.owner, self.key)
        except (OperationalError, InterfaceError):
            return _problem(503, "unavailable", "Service unavailable",
                            "the database is unavailable; try again", {"Retry-After": "1"})
        if stored is not None:
            if stored.fingerprint != self.fingerprint:
                return _problem(422, "idempotency-key-reused", "Idempotency key reused",
                                f"this {HEADER} was used with another request")
            return _Replay(store.open_answer(runtime.box, stored))
        captured = _Captured()
        async with runtime.async_session() as session:
            held = scope[_SCOPE_KEY] = HeldTransaction(session)
            try:
                await app(scope, receive, captured.send)
            finally:
                scope.pop(_SCOPE_KEY, None)
            keep = 200 <= captured.status < 300 and not captured.streamed
            if not (held.completed or keep):
                await session.rollback()
                return captured
            if keep:
                await store.keep(session, runtime.box, owner=self.owner, key=self.key,
                                 fingerprint=self.fingerprint,
                                 answer=store.Answer(captured.status, captured.headers,
                                                     captured.body))
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                return _problem(409, "idempotency-key-in-use", "Request in progress",
                                f"another request with this {HEADER} was answered; "
                                "retry to get its answer")
            except (OperationalError, InterfaceError):
                # Outside the app's handlers: the same 503 a request without a key gets.
                return _problem(503, "unavailable", "Service unavailable",
                                "the database is unavailable; try again", {"Retry-After": "1"})
            work = UnitOfWork.detach(session)
        try:
            await work.flush(runtime.redis)
        except (RedisError, OSError):
            # Saved but not published: the answer is dropped so that a retry runs the
            # call again and publishes.
            if keep:
                await store.forget(runtime.async_session, self.owner, self.key)
            return _problem(503, "unavailable", "Service unavailable",
                            "the change is saved but could not be published yet; "
                            "retry the call", {"Retry-After": "1"})
        return captured


class _Replay:
    """A stored answer, sent again."""

    def __init__(self, answer: store.Answer) -> None:
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.answer.body
        headers = [*self.answer.kept_headers(),
                   (b"content-length", str(len(body)).encode()),
                   (REPLAYED_HEADER.lower().encode(), b"true")]
        await send({"type": "http.response.start", "status": self.answer.status,
                    "headers": headers})
        await send({"type": "http.response.body", "body": body})
