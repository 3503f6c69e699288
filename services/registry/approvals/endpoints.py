"""Consent requests (docs/product.md, "Approval requests"): the deciders' list and
decisions, and the requester's own list."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from services.registry.approvals import service
from services.registry.approvals.schemas import (
    ApproveBody,
    ConsentRequestList,
    ConsentRequestOut,
    DenyBody,
)
from services.registry.deps import (
    Cursor,
    LanguageDep,
    Limit,
    RuntimeDep,
    SessionDep,
    user_can,
)
from shared.models import ConsentRequestStatus
from shared.pagination import DEFAULT_LIMIT, page
from shared.policy.dependency import UserCaller

router = APIRouter(tags=["consent requests"])
DECIDE: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such request (or not one the caller may decide)"},
    409: {"description": "decided already or expired; or the requester may no longer "
                         "have the connection"}}
StatusQuery = Annotated[ConsentRequestStatus | None, Query(description="only these")]
AppQuery = Annotated[str | None, Query(max_length=80, description="an app's client_id")]
ListRequests = Annotated[UserCaller, user_can("consent_requests.list")]
Approve = Annotated[UserCaller, user_can("consent_requests.approve")]
Deny = Annotated[UserCaller, user_can("consent_requests.deny")]
Mine = Annotated[UserCaller, user_can("me.consent_requests.list")]


@router.get("/v1/environment/consent-requests", response_model=ConsentRequestList)
async def list_consent_requests(
    request: Request, response: Response, session: SessionDep, runtime: RuntimeDep,
    caller: ListRequests, status: StatusQuery = None, app: AppQuery = None,
    cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT,
) -> dict:
    """The requests the caller may decide, oldest first: an accountant's, every request
    of the environment; a user's who may consent, those for its own debtor whose
    companies it all reaches (never its own)."""
    rows, next_cursor = await service.list_for_decider(
        session, runtime.keyring.digest_key, caller.user, cursor, limit, status, app)
    return page(request, response, rows, next_cursor)


@router.post("/v1/environment/consent-requests/{request_id}/approve",
             response_model=ConsentRequestOut, responses=DECIDE)
async def approve_consent_request(request_id: uuid.UUID, session: SessionDep,
                                  caller: Approve, lang: LanguageDep,
                                  body: ApproveBody | None = None) -> ConsentRequestOut:
    """Approve: the requester's connection is recorded (the requested scopes, the
    requested companies it still reaches) with `approved_by`; the app's next
    authorization request completes without the consent page."""
    return await service.approve(session, caller.user, request_id,
                                 body.reason if body else None, lang)


@router.post("/v1/environment/consent-requests/{request_id}/deny",
             response_model=ConsentRequestOut, responses=DECIDE)
async def deny_consent_request(request_id: uuid.UUID, body: DenyBody, session: SessionDep,
                               caller: Deny) -> ConsentRequestOut:
    """Deny, with a reason the requester sees."""
    return await service.deny(session, caller.user, request_id, body.reason)


@router.get("/v1/me/consent-requests", response_model=ConsentRequestList)
async def list_my_consent_requests(
    request: Request, response: Response, session: SessionDep, runtime: RuntimeDep,
    caller: Mine, status: StatusQuery = None, app: AppQuery = None,
    cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT,
) -> dict:
    """The caller's own requests and their decisions, oldest first."""
    rows, next_cursor = await service.list_mine(
        session, runtime.keyring.digest_key, caller.user, cursor, limit, status, app)
    return page(request, response, rows, next_cursor)

