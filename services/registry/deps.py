"""Dependencies of the registry's endpoints: the runtime, the request's session (one
transaction, committed by this dependency), and the kinds of caller.

Status changes (a revoked connection, a suspended user) are noted on the session while
the transaction runs and published to Redis right after the commit, before the response
is sent, so resource servers refuse the tokens on the very next call.
"""
# No `from __future__ import annotations` here: FastAPI must resolve the annotations of
# the dependencies that the factories below define inside functions.

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from redis.exceptions import RedisError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth_deps import PrincipalDep, require_scope
from shared.errors import Forbidden, InsufficientScope, Unavailable
from shared.models import App, User, UserTemplate
from shared.outbox import emit, nudge
from shared.runtime import Runtime
from shared.status import Subject, publish_async
from shared.tokens import InvalidToken, Principal

STATUS_CHANGES = "koppel_status_changes"
NUDGE = "koppel_nudge_relay"


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def note_status(session: AsyncSession, subject: Subject, ident: str | uuid.UUID,
                active: bool) -> None:
    """Publish this status once the session's transaction has committed."""
    session.info.setdefault(STATUS_CHANGES, []).append((subject, ident, active))


def emit_event(session: AsyncSession, *args: Any, **event: Any) -> None:
    """Write an outbox event in the session's transaction; the worker is nudged after
    the commit."""
    emit(session, *args, **event)
    session.info[NUDGE] = True


async def after_commit(session: AsyncSession, client: Any) -> None:
    """Publish the noted status changes and nudge the outbox relay (after the commit)."""
    changes = session.info.pop(STATUS_CHANGES, [])
    if changes:
        await publish_async(client, changes)
    if session.info.pop(NUDGE, False):
        await nudge(client)


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One session in one transaction: committed when the endpoint succeeds, else
    rolled back; noted status changes are published after the commit."""
    async with runtime.async_session() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        try:
            await after_commit(session, runtime.redis)
        except (RedisError, OSError) as exc:
            # Saved, but not yet published: a retry of the same call publishes again.
            raise Unavailable("the change is saved but could not be published yet; "
                              "retry the call") from exc


# scope="function": the commit and the publish happen before the response is sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


@dataclass(frozen=True)
class UserCaller:
    """A user calling through a first-party app."""

    principal: Principal
    user: User


@dataclass(frozen=True)
class AppCaller:
    """An app calling on its own behalf (client credentials)."""

    principal: Principal
    app: App


async def _user(session: AsyncSession, principal: Principal) -> UserCaller:
    if principal.kind != "user":
        raise Forbidden("this call needs a user's token from a first-party app")
    user = await session.get(User, principal.user_id)
    if user is None or user.environment_id != principal.environment_id or not user.active:
        raise InvalidToken("the access token's user is unknown or inactive")
    return UserCaller(principal, user)


def user_with_scope(scope: str):
    """A dependency giving the calling user if the token grants `scope`."""
    checked = require_scope(scope)

    async def dependency(session: SessionDep,
                         principal: Annotated[Principal, Depends(checked)]) -> UserCaller:
        return await _user(session, principal)

    dependency.__name__ = f"user_with_{scope.replace('.', '_')}"
    return dependency


def accountant_with_scope(scope: str):
    """A dependency giving the calling accountant if the token grants `scope`."""
    checked = user_with_scope(scope)

    async def dependency(caller: Annotated[UserCaller, Depends(checked)]) -> UserCaller:
        if caller.user.template != UserTemplate.ACCOUNTANT:
            raise Forbidden("only accountant logins see the environment overview")
        return caller

    dependency.__name__ = f"accountant_with_{scope.replace('.', '_')}"
    return dependency


async def app_caller(session: SessionDep, principal: PrincipalDep) -> AppCaller:
    """The app of a client-credentials token."""
    if principal.kind != "app":
        raise Forbidden("this call needs the app's own token (client credentials)")
    app = (await session.exec(select(App).where(App.client_id == principal.client_id))).first()
    if app is None:
        raise InvalidToken("the access token's app is unknown")
    return AppCaller(principal, app)


def first_party_app_with_scope(scope: str):
    """A dependency giving a first-party app calling with client credentials and `scope`."""

    async def dependency(caller: Annotated[AppCaller, Depends(app_caller)]) -> AppCaller:
        if not caller.app.first_party:
            raise Forbidden("this call is for first-party apps only")
        if not caller.principal.has_scope(scope):
            raise InsufficientScope(scope)
        return caller

    dependency.__name__ = f"first_party_app_with_{scope.replace('.', '_')}"
    return dependency


ConnectionsReader = Annotated[UserCaller, Depends(user_with_scope("connections.read"))]
ConnectionsManager = Annotated[UserCaller, Depends(user_with_scope("connections.manage"))]
OverviewReader = Annotated[
    UserCaller, Depends(accountant_with_scope("environment.connections.read"))
]
OverviewManager = Annotated[
    UserCaller, Depends(accountant_with_scope("environment.connections.manage"))
]
AppCallerDep = Annotated[AppCaller, Depends(app_caller)]


def language(request: Request) -> str:
    """`nl` when the caller prefers Dutch, else `en`."""
    first = request.headers.get("accept-language", "").split(",")[0].strip().lower()
    return "nl" if first.startswith("nl") else "en"


LanguageDep = Annotated[str, Depends(language)]
