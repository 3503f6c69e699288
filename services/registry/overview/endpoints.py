"""The environment overview for accountant logins (docs/product.md 5.5)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from services.registry.connections.schemas import NarrowBody
from services.registry.deps import (
    CSV,
    LanguageDep,
    RuntimeDep,
    SessionDep,
    user_can,
    wants_csv,
)
from services.registry.overview import service
from services.registry.overview.csv_export import csv_stream
from services.registry.overview.schemas import (
    BulkRevoke,
    BulkRevokeResult,
    OverviewList,
    OverviewQuery,
    OverviewRow,
    RevokeWithReason,
    SummaryList,
)
from shared.pagination import check_limit, page
from shared.policy.dependency import UserCaller

router = APIRouter(prefix="/v1/environment", tags=["environment overview"])
EnvironmentConnectionsList = Annotated[UserCaller, user_can("environment.connections.list")]
EnvironmentConnectionsSummary = Annotated[UserCaller, user_can("environment.connections.summary")]
EnvironmentConnectionsBulkRevoke = Annotated[
    UserCaller, user_can("environment.connections.bulk_revoke")
]
EnvironmentConnectionsRevoke = Annotated[UserCaller, user_can("environment.connections.revoke")]
EnvironmentConnectionsNarrow = Annotated[UserCaller, user_can("environment.connections.narrow")]


@router.get(
    "/connections", response_model=OverviewList,
    responses={200: {"content": {CSV: {}}, "description": "JSON, or CSV when asked with Accept"},
               403: {"description": "not an accountant login"}},
)
async def list_environment_connections(
    request: Request, response: Response, session: SessionDep, runtime: RuntimeDep,
    caller: EnvironmentConnectionsList, lang: LanguageDep, query: Annotated[OverviewQuery, Query()],
):
    """Every connection of every user in the caller's environment, with the user and
    flags (deactivated user, stale = unused for 90 days, sensitive scopes); filters,
    sort (`created_at`, `last_used_at`, `expires_at`, `-` for descending; never-used
    connections sort first and never-expiring ones last, ascending) and cursor pagination.
    With `Accept: text/csv`: every matching connection as streamed CSV (no paging)."""
    if wants_csv(request):
        check_limit(query.limit)
        batches = service.export_batches(
            runtime.async_session, caller.user.environment_id, query,
            notice_days=runtime.settings.consent_expiry_notice_days)
        return StreamingResponse(
            csv_stream(batches), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="connections.csv"'},
        )
    rows, next_cursor = await service.list_page(
        session, runtime.keyring.digest_key, caller, query, lang,
        runtime.settings.consent_expiry_notice_days)
    # Written by orjson from plain rows, as FastAPI writes `OverviewList` (no models to
    # validate and dump again); the headers set on `response` (`Link`) kept.
    body = service.page_json(page(request, response, rows, next_cursor))
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    return Response(body, media_type="application/json", headers=headers)


@router.get("/connections/summary", response_model=SummaryList)
async def summarise_environment_connections(
    session: SessionDep, caller: EnvironmentConnectionsSummary,
) -> SummaryList:
    """Per app: connections by status, users, debtors, granted scopes and last use."""
    return SummaryList(data=await service.summary(session, caller))


@router.post("/connections/bulk-revoke", response_model=BulkRevokeResult)
async def bulk_revoke_environment_connections(
    body: BulkRevoke, session: SessionDep, runtime: RuntimeDep,
    caller: EnvironmentConnectionsBulkRevoke, lang: LanguageDep,
) -> BulkRevokeResult:
    """Revoke every live connection matching the filter (at least one criterion), with a
    required reason; `dry_run` only counts them and shows a sample."""
    count, sample = await service.bulk_revoke(
        session, caller, body.filter, body.reason, body.dry_run, lang,
        runtime.settings.consent_expiry_notice_days)
    return BulkRevokeResult(dry_run=body.dry_run, count=count, sample=sample)


@router.post("/connections/{connection_id}/revoke", response_model=OverviewRow,
             responses={404: {"description": "no such connection in your environment"}})
async def revoke_environment_connection(
    connection_id: uuid.UUID, body: RevokeWithReason, session: SessionDep,
    runtime: RuntimeDep, caller: EnvironmentConnectionsRevoke, lang: LanguageDep,
) -> OverviewRow:
    """Revoke one connection of the environment, with a required reason."""
    return await service.revoke_one(session, caller, connection_id, body.reason, lang,
                                    runtime.settings.consent_expiry_notice_days)


@router.post("/connections/{connection_id}/narrow", response_model=OverviewRow,
             responses={404: {"description": "no such connection in your environment"},
                        409: {"description": "the connection is revoked"},
                        422: {"description": "not a non-empty subset of its scopes"}})
async def narrow_environment_connection(
    connection_id: uuid.UUID, body: NarrowBody, session: SessionDep,
    runtime: RuntimeDep, caller: EnvironmentConnectionsNarrow, lang: LanguageDep,
) -> OverviewRow:
    """Drop scopes from one connection of the environment (`scopes`: those to keep), as
    the consenting user may: tokens lose the others on their next call; audited, and the
    app gets `connection.updated`."""
    return await service.narrow_one(session, caller, connection_id, body.scopes, lang,
                                    runtime.settings.consent_expiry_notice_days)
