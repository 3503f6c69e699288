"""The exposure list: the connections that cover one employee, with who consented and to
what."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from shared.models import UserTemplate
from shared.scopes import Sensitivity


class ExposureStatus(StrEnum):
    """Which connections to list: `active` (live: its tokens read now), one other status
    (`expired` includes active connections past their `expires_at`), or `all`."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    REVOKED = "revoked"
    ALL = "all"


class ExposureApp(BaseModel):
    client_id: str
    name: str


class ConsentingUser(BaseModel):
    id: uuid.UUID
    email: str
    template: UserTemplate


class ExposedScope(BaseModel):
    scope: str
    title: str
    sensitivity: Sensitivity


class Exposure(BaseModel):
    """One connection that covers the employee."""

    id: uuid.UUID = Field(description="the connection's id")
    status: str = Field(description="active, suspended, expired or revoked; a connection "
                        "past its expires_at is expired here before the worker marks it")
    app: ExposureApp
    user: ConsentingUser = Field(description="the user who gave the consent")
    scopes: list[ExposedScope] = Field(description="the consented scopes: which parts of "
                                       "the employee's data, and how sensitive")
    since: datetime = Field(description="when the consent was given")
    last_used_at: datetime | None = Field(description="the app's last call of the data "
                                          "API with this connection (about a minute behind)")
    expires_at: datetime | None = Field(description="null: it does not expire")


class ExposureList(BaseModel):
    data: list[Exposure]
    next_cursor: str | None
