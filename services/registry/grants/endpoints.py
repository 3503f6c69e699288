"""The grant management endpoint (Grant Management for OAuth 2.0, section 6): a partner
app queries and revokes its own grants (connections) with a client-credentials token
carrying `grant_management_query` / `grant_management_revoke`. Another app's grant and
an unknown id both answer 404."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status

from services.registry.connections import service
from services.registry.deps import RuntimeDep, SessionDep, app_can
from services.registry.grants.schemas import GrantOut, grant_view
from shared.audit import Actor
from shared.errors import NotFound
from shared.policy.dependency import AppCaller

router = APIRouter(tags=["grants"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such grant (or not yours)"}}
GrantId = Annotated[str, Path(description="the `grant_id` of a token response")]
GrantsRead = Annotated[AppCaller, app_can("grants.read")]
GrantsRevoke = Annotated[AppCaller, app_can("grants.revoke")]


def _connection_id(grant_id: str) -> uuid.UUID:
    """The connection a grant id names; anything that is no connection id is unknown
    (404, as the draft says), never a validation error."""
    try:
        if len(grant_id) <= 64:
            return uuid.UUID(grant_id)
    except ValueError:
        pass
    raise NotFound("no such grant")


@router.get("/v1/grants/{grant_id}", response_model=GrantOut, responses=NOT_FOUND)
async def query_grant(grant_id: GrantId, session: SessionDep, runtime: RuntimeDep,
                      caller: GrantsRead) -> GrantOut:
    """The status and content of one of the calling app's grants (its connections)."""
    connection, _, company_ids = await service.get_for_app(
        session, _connection_id(grant_id), caller)
    return grant_view(connection, company_ids, runtime.settings.sync_url)


@router.delete("/v1/grants/{grant_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=NOT_FOUND)
async def revoke_grant(grant_id: GrantId, session: SessionDep, caller: GrantsRevoke) -> Response:
    """Revoke one of the calling app's grants: exactly the partner's disconnect (final,
    its token families end, audited, `connection.revoked`). Revoking a revoked grant
    again answers 204 too."""
    connection, _, _ = await service.get_for_app(
        session, _connection_id(grant_id), caller, for_update=True)
    await service.revoke(session, connection, Actor("app", caller.app.client_id),
                         f"app:{caller.app.client_id}", None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
