"""Consent receipts of a connection, for its user, the environment's accountant and its
app; and the scope wording documents the receipts name by hash (public)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from services.registry.connections import service as connections
from services.registry.deps import Cursor, Limit, RuntimeDep, SessionDep, app_can, user_can
from services.registry.receipts import service
from services.registry.receipts.schemas import ReceiptList, WordingDocument
from shared.pagination import DEFAULT_LIMIT, page
from shared.policy.dependency import AppCaller, UserCaller, declare

router = APIRouter(tags=["consent receipts"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such connection (or not one the caller may see)"}}
MeReceipts = Annotated[UserCaller, user_can("me.connections.receipts.list")]
EnvironmentReceipts = Annotated[UserCaller, user_can("environment.connections.receipts.list")]
AppReceipts = Annotated[AppCaller, app_can("app.connections.receipts.list")]
Sha256 = Annotated[str, Path(pattern="^[0-9a-f]{64}$",
                             description="the SHA-256 (64 lowercase hex digits)")]
# A wording document never changes under its hash.
IMMUTABLE = "public, max-age=31536000, immutable"


@router.get("/v1/me/connections/{connection_id}/receipts", response_model=ReceiptList,
            responses=NOT_FOUND)
async def list_my_connection_receipts(
    connection_id: uuid.UUID, request: Request, response: Response, session: SessionDep,
    runtime: RuntimeDep, caller: MeReceipts, cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> dict:
    """The signed consent receipts of one of the calling user's connections, oldest
    first (each names the one before it). Another user's connection answers 404."""
    await connections.get_visible(session, connection_id,
                                  environment_id=caller.user.environment_id,
                                  user_id=caller.user.id)
    data, next_cursor = await service.list_receipts(
        session, runtime.keyring.digest_key, connection_id, cursor, limit)
    return page(request, response, data, next_cursor)


@router.get("/v1/environment/connections/{connection_id}/receipts",
            response_model=ReceiptList, responses=NOT_FOUND)
async def list_environment_connection_receipts(
    connection_id: uuid.UUID, request: Request, response: Response, session: SessionDep,
    runtime: RuntimeDep, caller: EnvironmentReceipts, cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> dict:
    """The signed consent receipts of one connection of the environment, oldest first.
    Another environment's connection answers 404."""
    await connections.get_visible(session, connection_id,
                                  environment_id=caller.user.environment_id)
    data, next_cursor = await service.list_receipts(
        session, runtime.keyring.digest_key, connection_id, cursor, limit)
    return page(request, response, data, next_cursor)


@router.get("/v1/app/connections/{connection_id}/receipts", response_model=ReceiptList,
            responses=NOT_FOUND)
async def list_app_connection_receipts(
    connection_id: uuid.UUID, request: Request, response: Response, session: SessionDep,
    runtime: RuntimeDep, caller: AppReceipts, cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> dict:
    """The consent receipts of one of the calling app's connections, oldest first, each
    signed without the consenting user's fields (`user`, `actor`). Another app's
    connection answers 404."""
    await connections.get_for_app(session, connection_id, caller)
    data, next_cursor = await service.list_receipts(
        session, runtime.keyring.digest_key, connection_id, cursor, limit, for_partner=True)
    return page(request, response, data, next_cursor)


@router.get("/v1/scopes/wording/{sha256}", response_model=WordingDocument,
            responses={404: {"description": "no wording has this SHA-256"}},
            dependencies=[Depends(declare("scopes.wording.read"))])
async def get_scope_wording(sha256: Sha256, session: SessionDep) -> Response:
    """The scope wording a consent receipt names by `wording_sha256`: the exact bytes
    whose SHA-256 is the hash (canonical JSON: sorted keys, no spaces, UTF-8). Public:
    no token needed; it never changes."""
    document = await service.wording_document(session, sha256)
    return Response(document.encode(), media_type="application/json",
                    headers={"Cache-Control": IMMUTABLE})
