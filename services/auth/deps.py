"""Dependencies of the auth service's endpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from services.auth.client_credentials import basic_credentials, failure_key
from services.auth.oauth2.client_cache import ClientCache
from services.auth.oauth2.context import AuthContext
from shared import ratelimit
from shared.errors import RateLimited, Unauthorized
from shared.models import App, AppStatus
from shared.policy.resolve import app_by_client_id
from shared.redis_embedded import resolved_redis_url
from shared.runtime import Runtime
from shared.signing import Signer
from shared.unit_of_work import UnitOfWork
from shared.vault import digest_matches

T = TypeVar("T")
DEFAULT_DB_SLOTS = 5


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "-"


def _db_limiter(request: Request, runtime: Runtime) -> anyio.CapacityLimiter:
    """At most as many transactions in threads as the pool keeps connections.

    More would not run any sooner: they would wait in the pool's queue while holding a
    thread (and the GIL's attention), or open overflow connections that the pool closes
    again on return, so each such request paid for a new PostgreSQL connection."""
    limiter = getattr(request.app.state, "db_limiter", None)
    if limiter is None:
        size = getattr(runtime.engine.pool, "size", None)
        slots = size() if callable(size) else DEFAULT_DB_SLOTS
        limiter = request.app.state.db_limiter = anyio.CapacityLimiter(max(slots, 1))
    return limiter


def _signer(request: Request, runtime: Runtime) -> Signer:
    signer = getattr(request.app.state, "signer", None)
    if signer is None:
        signer = request.app.state.signer = Signer(runtime.box)
    return signer


def get_client_cache(request: Request) -> ClientCache:
    """The process's client cache (services/auth/oauth2/client_cache.py)."""
    cache = getattr(request.app.state, "client_cache", None)
    if cache is None:
        cache = request.app.state.client_cache = ClientCache(
            resolved_redis_url(get_runtime(request).settings))
    return cache


def close_client_cache(app: Any) -> None:
    cache = getattr(app.state, "client_cache", None)
    if cache is not None:
        cache.close()


async def run_authlib(request: Request, work: Callable[[AuthContext], T], *,
                      read_only: bool = False, clients: dict[str, Any] | None = None) -> T:
    """Run sync work (Authlib, sync queries) in the thread pool in one transaction.

    The transaction commits whatever the work did, also when it produced an OAuth error
    response (a replayed code must stay spent and its family revoked); an exception rolls
    back. The session's unit of work (statuses, the relay's nudge, uses of connections)
    is flushed after the commit.

    `read_only` work (it only reads) runs without a transaction on PostgreSQL, which
    saves the BEGIN and COMMIT round trips; SQLite keeps its BEGIN IMMEDIATE.

    `clients` are the request's clients by client id, known already (from the client
    cache); the clients the work reads are added to it.
    """
    runtime = get_runtime(request)
    signer = _signer(request, runtime)
    autocommit = read_only and runtime.engine.dialect.name == "postgresql"

    def _in_thread() -> tuple[T, UnitOfWork]:
        with runtime.session() as session:
            # Read-only work that needs no statement (its client known already) takes
            # no connection from the pool at all (AuthContext.connection).
            ctx = AuthContext(session, runtime.settings, runtime.keyring, signer,
                              runtime.sync_redis, client_address(request),
                              clients=clients if clients is not None else {},
                              autocommit=autocommit)
            result = work(ctx)
            session.commit()
            return result, UnitOfWork.detach(session)

    result, after_commit = await anyio.to_thread.run_sync(
        _in_thread, limiter=_db_limiter(request, runtime)
    )
    await after_commit.flush(runtime.redis)
    return result


def _basic_challenge(detail: str) -> Unauthorized:
    error = Unauthorized(detail)
    error.headers["WWW-Authenticate"] = 'Basic realm="koppel"'
    return error


async def first_party_client(request: Request) -> App:
    """The first-party app authenticated with HTTP Basic, or 401."""
    runtime = get_runtime(request)
    credentials = basic_credentials(request.headers.get("authorization", ""))
    if credentials is None:
        raise _basic_challenge("authenticate as a first-party client with HTTP Basic")
    client_id, secret = credentials
    limit_key = failure_key(client_id, client_address(request))
    wait = await ratelimit.retry_after(runtime.redis, limit_key,
                                       runtime.settings.failed_client_auth_limit)
    if wait is not None:
        raise RateLimited(wait, "too many failed client authentications")

    def lookup() -> App | None:
        with runtime.session() as session:
            return session.exec(app_by_client_id(client_id)).first()

    app = await run_in_threadpool(lookup)
    ok = (
        app is not None and app.first_party and app.status == AppStatus.ACTIVE
        and digest_matches(runtime.keyring.digest_key, secret, app.client_secret_digest)
    )
    if app is None or not ok:
        await ratelimit.record(runtime.redis, limit_key, runtime.settings.failed_attempt_window)
        raise _basic_challenge("unknown client, wrong secret, or not a first-party app")
    return app


FirstPartyClient = Annotated[App, Depends(first_party_client)]
