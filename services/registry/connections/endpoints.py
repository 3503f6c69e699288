"""Manage apps (a user's own connections) and the partner's view (an app's own)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response, status
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.connections import (
    expiry,
    health,
    lifecycle,
    narrowing,
    service,
)
from services.registry.connections.schemas import (
    ConnectionList,
    ConnectionOut,
    NarrowBody,
    PartnerConnectionList,
    PartnerConnectionOut,
    RevokeBody,
    connection_fields,
)
from services.registry.deps import (
    Cursor,
    LanguageDep,
    Limit,
    RuntimeDep,
    SessionDep,
    app_can,
    user_can,
)
from shared.audit import Actor
from shared.db.types import utcnow
from shared.models import ConnectionStatus
from shared.pagination import DEFAULT_LIMIT, page
from shared.policy.dependency import AppCaller, UserCaller

router = APIRouter(tags=["connections"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such connection (or not yours)"}
}
MeConnectionsList = Annotated[UserCaller, user_can("me.connections.list")]
MeConnectionsRead = Annotated[UserCaller, user_can("me.connections.read")]
MeConnectionsRevoke = Annotated[UserCaller, user_can("me.connections.revoke")]
MeConnectionsRenew = Annotated[UserCaller, user_can("me.connections.renew")]
MeConnectionsNarrow = Annotated[UserCaller, user_can("me.connections.narrow")]
AppConnectionsList = Annotated[AppCaller, app_can("app.connections.list")]
AppConnectionsRead = Annotated[AppCaller, app_can("app.connections.read")]
AppConnectionsRevoke = Annotated[AppCaller, app_can("app.connections.revoke")]


@router.get("/v1/me/connections", response_model=ConnectionList)
async def list_my_connections(
    request: Request, response: Response, session: SessionDep, runtime: RuntimeDep,
    caller: MeConnectionsList, lang: LanguageDep, cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> dict:
    """The connections the calling user made (Manage apps), oldest first."""
    rows, next_cursor = await service.list_for_user(
        session, runtime.keyring.digest_key, caller, cursor, limit
    )
    data = await _with_flags(session, runtime, caller, rows, lang)
    return page(request, response, data, next_cursor)


async def _with_flags(session, runtime, caller: UserCaller, rows, lang: str
                      ) -> list[ConnectionOut]:
    """The user's connections with their health flags (one batch of app look-ups)."""
    now = utcnow()
    limit = health.expiring_before(now, runtime.settings.consent_expiry_notice_days)
    by_app = await health.app_flags(session, caller.user.environment_id,
                                    {a.id: a.status for _, a, _ in rows})
    answers = []
    for c, a, ids in rows:
        fields = connection_fields(c, a, ids, lang, now)
        answers.append(ConnectionOut(**fields, approved_by=c.approved_by, flags=health.flags(
            c.status, expires_at=c.expires_at, user_active=caller.user.active,
            unused=health.is_unused(c.status, c.created_at, c.last_used_at, now),
            unused_scopes=bool(fields["unused_scopes"]),
            app_flags=by_app.get(c.app_id, []), expiring_limit=limit)))
    return answers


@router.get("/v1/me/connections/{connection_id}", response_model=ConnectionOut,
            responses=NOT_FOUND)
async def get_my_connection(
    connection_id: uuid.UUID, session: SessionDep, runtime: RuntimeDep,
    caller: MeConnectionsRead, lang: LanguageDep,
) -> ConnectionOut:
    """One of the calling user's connections; another user's id answers 404."""
    connection, app, ids = await service.get_visible(
        session, connection_id, environment_id=caller.user.environment_id,
        user_id=caller.user.id,
    )
    return (await _with_flags(session, runtime, caller, [(connection, app, ids)], lang))[0]


@router.delete("/v1/me/connections/{connection_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=NOT_FOUND)
async def revoke_my_connection(
    connection_id: uuid.UUID, session: SessionDep, caller: MeConnectionsRevoke,
) -> Response:
    """Revoke one of the calling user's connections: at once, for good, audited, and the
    app gets a `connection.revoked` event. Another user's id answers 404."""
    connection, _, _ = await service.get_visible(
        session, connection_id, environment_id=caller.user.environment_id,
        user_id=caller.user.id, for_update=True,
    )
    await service.revoke(session, connection, Actor("user", str(caller.user.id)),
                         f"user:{caller.user.id}", None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/me/connections/{connection_id}/renew", response_model=ConnectionOut,
             responses={**NOT_FOUND, 409: {"description": "the connection does not expire, "
                                                        "or is revoked"}})
async def renew_my_connection(
    connection_id: uuid.UUID, session: SessionDep, runtime: RuntimeDep,
    caller: MeConnectionsRenew, lang: LanguageDep,
) -> ConnectionOut:
    """Renew one of the calling user's connections that expires (or has expired): the
    same connection, active again unless suspended (or the policy suspends it now: the
    app suspended or blocked), with a new `expires_at` from now;
    audited, and the app gets `connection.renewed`. 409 when it does not expire or is
    revoked; another user's id answers 404."""
    connection, app, ids = await service.get_visible(
        session, connection_id, environment_id=caller.user.environment_id,
        user_id=caller.user.id, for_update=True,
    )
    await expiry.renew(session, connection, caller.user, utcnow(), lang)
    # The policy's suspension rules hold for a renewed connection as for any other (a
    # suspended or blocked app, an app not admitted here): it comes back suspended.
    await lifecycle.reconcile(session, Actor("user", str(caller.user.id)),
                              user_id=connection.user_id, app_id=connection.app_id)
    return (await _with_flags(session, runtime, caller, [(connection, app, ids)], lang))[0]


@router.post("/v1/me/connections/{connection_id}/narrow", response_model=ConnectionOut,
             responses={**NOT_FOUND, 409: {"description": "the connection is revoked"},
                        422: {"description": "not a non-empty subset of its scopes"}})
async def narrow_my_connection(
    connection_id: uuid.UUID, body: NarrowBody, session: SessionDep,
    caller: MeConnectionsNarrow, lang: LanguageDep,
) -> ConnectionOut:
    """Drop scopes from one of the calling user's connections: `scopes` are those to
    keep. Tokens already issued lose the others on their next call; refresh goes on
    unless `offline_access` is dropped. Audited, and the app gets `connection.updated`.
    Another user's id answers 404."""
    connection, app, ids = await service.get_visible(
        session, connection_id, environment_id=caller.user.environment_id,
        user_id=caller.user.id, for_update=True,
    )
    await narrowing.narrow(session, connection, body.scopes,
                           Actor("user", str(caller.user.id)), f"user:{caller.user.id}")
    return ConnectionOut(**connection_fields(connection, app, ids, lang),
                         approved_by=connection.approved_by)


async def _partner_views(session: AsyncSession, rows, lang: str) -> list[PartnerConnectionOut]:
    sandboxes = await service.sandbox_environments(
        session, {connection.environment_id for connection, _, _ in rows})
    return [PartnerConnectionOut(**connection_fields(connection, app, ids, lang),
                                 environment_id=connection.environment_id,
                                 sandbox=connection.environment_id in sandboxes)
            for connection, app, ids in rows]


@router.get("/v1/app/connections", response_model=PartnerConnectionList)
async def list_app_connections(
    request: Request, response: Response, session: SessionDep, runtime: RuntimeDep,
    caller: AppConnectionsList, lang: LanguageDep, cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT, status: ConnectionStatus | None = None,
) -> dict:
    """The calling app's connections in every environment (client credentials): where,
    which debtor and companies, scopes, status and dates; never who made them."""
    rows, next_cursor = await service.list_for_app(
        session, runtime.keyring.digest_key, caller, cursor, limit, status
    )
    return page(request, response, await _partner_views(session, rows, lang), next_cursor)


@router.get("/v1/app/connections/{connection_id}", response_model=PartnerConnectionOut,
            responses=NOT_FOUND)
async def get_app_connection(
    connection_id: uuid.UUID, session: SessionDep, caller: AppConnectionsRead, lang: LanguageDep,
) -> PartnerConnectionOut:
    """One of the calling app's connections; another app's id answers 404."""
    row = await service.get_for_app(session, connection_id, caller)
    return (await _partner_views(session, [row], lang))[0]


@router.post("/v1/app/connections/{connection_id}/revoke", response_model=PartnerConnectionOut,
             responses=NOT_FOUND)
async def revoke_app_connection(
    connection_id: uuid.UUID, session: SessionDep, caller: AppConnectionsRevoke, lang: LanguageDep,
    body: Annotated[RevokeBody | None, Body()] = None,
) -> PartnerConnectionOut:
    """Disconnect: the app revokes one of its own connections, like a user's revoke.
    Another app's id answers 404."""
    row = await service.get_for_app(session, connection_id, caller, for_update=True)
    await service.revoke(session, row[0], Actor("app", caller.app.client_id),
                         f"app:{caller.app.client_id}", body.reason if body else None)
    return (await _partner_views(session, [row], lang))[0]
