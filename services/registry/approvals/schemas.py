"""Consent requests' documents and bodies (docs/product.md, "Approval requests")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.registry.connections.schemas import AppRef
from shared.models import ConsentRequestStatus

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class Requester(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    template: str


class ConsentRequestOut(BaseModel):
    id: uuid.UUID
    app: AppRef
    requester: Requester
    debtor_id: uuid.UUID
    company_ids: list[uuid.UUID]
    scopes: list[str]
    justification: str
    status: ConsentRequestStatus = Field(
        description="pending, approved, denied, or expired (pending for 30 days)")
    created_at: datetime
    expires_at: datetime = Field(description="when a pending request expires")
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    connection_id: uuid.UUID | None = Field(
        description="the connection an approval recorded for the requester")


class ConsentRequestList(BaseModel):
    data: list[ConsentRequestOut]
    next_cursor: str | None


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = None


class DenyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(description="why; the requester sees it")
