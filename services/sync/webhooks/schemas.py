"""Request and response bodies of the webhook endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_EVENTS = 50


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000)
    events: list[str] = Field(min_length=1, max_length=MAX_EVENTS)
    description: str | None = Field(default=None, max_length=500)


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2000)
    events: list[str] | None = Field(default=None, min_length=1, max_length=MAX_EVENTS)
    description: str | None = Field(default=None, max_length=500)
    status: Literal["active", "disabled"] | None = None


class RotateSecret(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_seconds: int = Field(default=24 * 3600, ge=0, le=7 * 24 * 3600)


class EndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    status: str
    disabled_reason: str | None
    disabled_at: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointCreated(EndpointOut):
    secret: str


class SecretOut(BaseModel):
    secret: str
    previous_secret_expires_at: datetime | None


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    latency_ms: int
    status_code: int | None
    succeeded: bool
    error: str | None


class DeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID | None
    type: str
    message_id: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    attempt_log: list[AttemptOut]


class EndpointList(BaseModel):
    data: list[EndpointOut]
    next_cursor: str | None


class DeliveryList(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None


class Queued(BaseModel):
    delivery_id: uuid.UUID
