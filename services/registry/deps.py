"""Dependencies of the registry's endpoints: the runtime, the request's session (one
transaction, committed by this dependency), and the kinds of caller.

Status changes (a revoked connection, a suspended user) are noted on the session's unit
of work (shared/unit_of_work.py) while the transaction runs and published to Redis right
after the commit, before the response is sent, so resource servers refuse the tokens on
the very next call.
"""
# No `from __future__ import annotations` here: FastAPI must resolve the annotations of
# the dependencies that the factories below define inside functions.

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from redis.exceptions import RedisError
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.errors import Unavailable
from shared.idempotency import held_transaction
from shared.policy.dependency import Authorizer
from shared.runtime import Runtime
from shared.unit_of_work import UnitOfWork


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(request: Request, runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One session in one transaction: committed when the endpoint succeeds, else
    rolled back; the unit of work (status changes, the relay's nudge) is flushed after
    the commit."""
    held = held_transaction(request)
    if held is not None:  # an idempotent request: the middleware commits with its answer
        async with held.lend() as session:
            yield session
        return
    async with runtime.async_session() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        try:
            await UnitOfWork.detach(session).flush(runtime.redis)
        except (RedisError, OSError) as exc:
            # Saved, but not yet published: a retry of the same call publishes again.
            raise Unavailable("the change is saved but could not be published yet; "
                              "retry the call") from exc


# scope="function": the commit and the publish happen before the response is sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


# The declared policy (shared/policy) on this service's request session.
allowed = Authorizer(get_session, with_reach=False)


def user_can(operation: str) -> Any:
    """The dependency of the user authorized for `operation` (a first-party user token):
    `Annotated[UserCaller, user_can("area.verb")]`."""
    return Depends(allowed.user(operation))


def app_can(operation: str) -> Any:
    """The dependency of the app authorized for `operation` (client credentials):
    `Annotated[AppCaller, app_can("area.verb")]`."""
    return Depends(allowed.app(operation))


def partner_can(operation: str) -> Any:
    """The dependency of the partner authorized for `operation` (an app's client
    credentials or the partner's initial access token):
    `Annotated[PartnerCaller, partner_can("area.verb")]`."""
    return Depends(allowed.partner(operation))


def language(request: Request) -> str:
    """`nl` when the caller prefers Dutch, else `en`."""
    first = request.headers.get("accept-language", "").split(",")[0].strip().lower()
    return "nl" if first.startswith("nl") else "en"


LanguageDep = Annotated[str, Depends(language)]
CSV = "text/csv"


def wants_csv(request: Request) -> bool:
    """Whether the caller asks for CSV (`Accept: text/csv`) rather than JSON."""
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() == CSV for part in accept.split(","))

# A list route's paging parameters.
Cursor = Annotated[str | None, Query(max_length=512, description="from `next_cursor`")]
Limit = Annotated[int, Query(description="page size, 1 to 500")]
