"""The environment's audit log, for accountant logins: every consent, scope change,
suspension, revoke and policy change, newest first, hash-chained."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from services.registry.deps import RuntimeDep, SessionDep, user_can
from shared.models import AuditEvent
from shared.pagination import (
    InvalidParameter,
    check_limit,
    decode_cursor,
    encode_cursor,
    page,
)
from shared.policy.dependency import UserCaller
from shared.utc_datetime import UTCDatetime

router = APIRouter(prefix="/v1/environment", tags=["audit log"])
EnvironmentAuditList = Annotated[UserCaller, user_can("environment.audit.list")]


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str | None = Field(default=None, max_length=64)
    actor_type: Literal["user", "app", "operator", "system"] | None = None
    actor_id: str | None = Field(default=None, max_length=100)
    subject_type: str | None = Field(default=None, max_length=32)
    subject_id: str | None = Field(default=None, max_length=100)
    created_after: UTCDatetime | None = None
    created_before: UTCDatetime | None = None
    order: Literal["desc", "asc"] = "desc"
    limit: int = 50
    cursor: str | None = Field(default=None, max_length=512)


class AuditEventOut(BaseModel):
    id: uuid.UUID
    seq: int
    action: str
    actor: dict[str, str | None]
    subject: dict[str, str | None]
    details: dict[str, Any]
    created_at: datetime
    hash: str


class AuditList(BaseModel):
    data: list[AuditEventOut]
    next_cursor: str | None


def _out(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        id=event.id, seq=event.seq, action=event.action,
        actor={"type": event.actor_type, "id": event.actor_id},
        subject={"type": event.subject_type, "id": event.subject_id},
        details=event.details, created_at=event.created_at, hash=event.hash,
    )


@router.get("/audit-events", response_model=AuditList)
async def list_audit_events(
    request: Request, response: Response, session: SessionDep, runtime: RuntimeDep,
    caller: EnvironmentAuditList, query: Annotated[AuditQuery, Query()],
) -> dict:
    """The environment's audit events, filtered, newest first (`order=asc`: oldest
    first), with cursor pagination by sequence number."""
    check_limit(query.limit)
    key, kind = runtime.keyring.digest_key, f"audit:{query.order}"
    stmt = select(AuditEvent).where(AuditEvent.environment_id == caller.user.environment_id)
    for name in ("action", "actor_type", "actor_id", "subject_type", "subject_id"):
        value = getattr(query, name)
        if value is not None:
            stmt = stmt.where(getattr(AuditEvent, name) == value)
    if query.created_after is not None:
        stmt = stmt.where(col(AuditEvent.created_at) >= query.created_after)
    if query.created_before is not None:
        stmt = stmt.where(col(AuditEvent.created_at) < query.created_before)
    seq = col(AuditEvent.seq)
    if query.cursor is not None:
        position = decode_cursor(key, kind, query.cursor)
        if len(position) != 1 or type(position[0]) is not int:
            raise InvalidParameter("the cursor is not valid for this list", parameter="cursor")
        stmt = stmt.where(seq < position[0] if query.order == "desc" else seq > position[0])
    stmt = stmt.order_by(seq.desc() if query.order == "desc" else seq.asc())
    events = list((await session.exec(stmt.limit(query.limit + 1))).all())
    more = len(events) > query.limit
    events = events[:query.limit]
    next_cursor = encode_cursor(key, kind, [events[-1].seq]) if more else None
    return page(request, response, [_out(e) for e in events], next_cursor)
