"""The environment overview's query, rows and bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.registry.connections.schemas import ConnectionOut
from shared.models import ConnectionStatus, UserTemplate
from shared.scopes import SCOPES
from shared.utc_datetime import UTCDatetime

SortKey = Literal["created_at", "-created_at", "last_used_at", "-last_used_at",
                  "expires_at", "-expires_at"]


class OverviewFilter(BaseModel):
    """Which connections: every criterion given must hold."""

    model_config = ConfigDict(extra="forbid")

    app: str | None = Field(default=None, max_length=80, description="the app's client_id")
    user: uuid.UUID | None = None
    debtor: uuid.UUID | None = None
    company: uuid.UUID | None = None
    scope: str | None = Field(default=None, max_length=80,
                              description="connections that grant this scope")
    status: ConnectionStatus | None = None
    created_after: UTCDatetime | None = None
    created_before: UTCDatetime | None = None
    last_used_after: UTCDatetime | None = None
    last_used_before: UTCDatetime | None = None
    expires_before: UTCDatetime | None = Field(
        default=None, description="connections that expire before this time (never "
        "those that do not expire)")
    user_deactivated: bool | None = None
    stale: bool | None = Field(default=None, description="unused for 90 days")

    @field_validator("scope")
    @classmethod
    def _known_scope(cls, value: str | None) -> str | None:
        if value is not None and value not in SCOPES:
            raise ValueError("unknown scope")
        return value

    def is_empty(self) -> bool:
        return not self.model_dump(exclude_none=True)


class OverviewQuery(OverviewFilter):
    """The list's filters, order and page."""

    sort: SortKey = "created_at"
    limit: int = 50
    cursor: str | None = Field(default=None, max_length=512)


class UserRef(BaseModel):
    id: uuid.UUID
    email: str
    template: UserTemplate


class OverviewRow(ConnectionOut):
    """A connection as the environment's accountant sees it."""

    user: UserRef
    user_deactivated: bool
    stale: bool
    sensitive_scopes: list[str]
    revoked_by: str | None = None
    revoke_reason: str | None = None


class OverviewList(BaseModel):
    data: list[OverviewRow]
    next_cursor: str | None


class RevokeWithReason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the reason is empty")
        return value.strip()


class BulkRevoke(RevokeWithReason):
    filter: OverviewFilter
    dry_run: bool = False


class BulkRevokeResult(BaseModel):
    dry_run: bool
    count: int
    sample: list[OverviewRow]


class AppSummary(BaseModel):
    app: dict
    connections: int
    active: int
    suspended: int
    revoked: int
    expired: int
    users: int
    debtors: int
    scopes: list[str]
    last_used_at: datetime | None
    never_used_scopes: list[str] = Field(
        default_factory=list, description="granted scopes (of live connections) that no "
        "connection of the app in the environment has ever needed")


class SummaryList(BaseModel):
    data: list[AppSummary]
