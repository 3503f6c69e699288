"""The environment's signed audit checkpoints, for accountant logins, newest first: each
a compact JWS of the chain head under the attestation key, to keep outside Koppel and
check with `koppel audit verify --checkpoints` (shared/audit_checkpoints.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from services.registry.deps import RuntimeDep, SessionDep, user_can
from shared.models import AuditCheckpoint
from shared.pagination import after_id, check_limit, id_cursor, page
from shared.policy.dependency import UserCaller

router = APIRouter(prefix="/v1/environment", tags=["audit log"])
CheckpointList = Annotated[UserCaller, user_can("environment.audit.checkpoints.list")]
CURSOR_KIND = "audit-checkpoints"


class CheckpointQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = 50
    cursor: str | None = Field(default=None, max_length=512)


class CheckpointOut(BaseModel):
    id: uuid.UUID
    environment_id: uuid.UUID
    seq: int
    hash: str
    kid: str
    jws: str
    created_at: datetime


class CheckpointPage(BaseModel):
    data: list[CheckpointOut]
    next_cursor: str | None


@router.get("/audit-checkpoints", response_model=CheckpointPage)
async def list_audit_checkpoints(
    request: Request, response: Response, session: SessionDep, runtime: RuntimeDep,
    caller: CheckpointList, query: Annotated[CheckpointQuery, Query()],
) -> dict:
    """The environment's signed audit checkpoints, newest first, with cursor pagination.
    Verify each `jws` with the keys at the auth service's `attestation_jwks_uri`."""
    check_limit(query.limit)
    key = runtime.keyring.digest_key
    stmt = select(AuditCheckpoint).where(
        AuditCheckpoint.environment_id == caller.user.environment_id)
    before = after_id(key, CURSOR_KIND, query.cursor)
    if before is not None:
        stmt = stmt.where(col(AuditCheckpoint.id) < before)
    stmt = stmt.order_by(col(AuditCheckpoint.id).desc()).limit(query.limit + 1)
    rows = list((await session.exec(stmt)).all())
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    next_cursor = id_cursor(key, CURSOR_KIND, rows[-1].id) if more else None
    data = [CheckpointOut.model_validate(row, from_attributes=True) for row in rows]
    return page(request, response, data, next_cursor)
