"""Dependencies of the auth service's endpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from services.auth.oauth2.context import AuthContext
from shared.runtime import Runtime
from shared.signing import Signer
from shared.status import publish_async

T = TypeVar("T")


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "-"


def _signer(request: Request, runtime: Runtime) -> Signer:
    signer = getattr(request.app.state, "signer", None)
    if signer is None:
        signer = request.app.state.signer = Signer(runtime.box)
    return signer


async def run_authlib(request: Request, work: Callable[[AuthContext], T]) -> T:
    """Run sync work (Authlib, sync queries) in the thread pool in one transaction.

    The transaction commits whatever the work did, also when it produced an OAuth error
    response (a replayed code must stay spent and its family revoked); an exception rolls
    back. Status changes are published to Redis after the commit.
    """
    runtime = get_runtime(request)
    signer = _signer(request, runtime)

    def _in_thread() -> tuple[T, AuthContext]:
        with runtime.session() as session:
            ctx = AuthContext(session, runtime.settings, runtime.keyring, signer,
                              client_address(request))
            result = work(ctx)
            session.commit()
            return result, ctx

    result, ctx = await run_in_threadpool(_in_thread)
    if ctx.status_changes:
        await publish_async(runtime.redis, ctx.status_changes)
    return result
