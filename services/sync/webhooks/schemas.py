"""Request and response bodies of the webhook endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.utc_datetime import UTCDatetime

MAX_EVENTS = 50
MAX_RATE_PER_SECOND = 1000
Scheme = Literal["hmac-sha256", "ed25519"]
SCHEME = ("`hmac-sha256`: Standard Webhooks `v1` signatures with the `whsec_` secret; "
          "`ed25519`: `v1a` signatures that the endpoint's `whpk_` public key verifies")
ORDERED = ("deliver the events of one customer (the debtor a connection is for) one at a "
           "time, in commit order: each waits for the one before it to succeed or finally "
           "fail")
RATE = ("at most this many deliveries a second to this endpoint (bursts up to the same "
        "number); null: no limit")


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000)
    events: list[str] = Field(min_length=1, max_length=MAX_EVENTS)
    description: str | None = Field(default=None, max_length=500)
    signature_scheme: Scheme = Field(default="hmac-sha256", description=SCHEME)
    ordered: bool = Field(default=False, description=ORDERED)
    max_rate_per_second: int | None = Field(default=None, ge=1, le=MAX_RATE_PER_SECOND,
                                            description=RATE)


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2000)
    events: list[str] | None = Field(default=None, min_length=1, max_length=MAX_EVENTS)
    description: str | None = Field(default=None, max_length=500)
    status: Literal["active", "disabled"] | None = None
    signature_scheme: Scheme | None = Field(default=None, description=SCHEME)
    ordered: bool | None = Field(default=None, description=ORDERED)
    max_rate_per_second: int | None = Field(default=None, ge=1, le=MAX_RATE_PER_SECOND,
                                            description=RATE)


class Recover(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: UTCDatetime = Field(description="resend the failed deliveries created at or after "
                            "this time (RFC 3339 with a time zone)")


class Recovered(BaseModel):
    recovered: int = Field(description="how many deliveries were queued again")


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
    signature_scheme: str
    public_key: str | None = Field(description="the `whpk_` key that verifies `v1a` "
                                   "signatures (set once the endpoint has used ed25519)")
    previous_public_key: str | None
    previous_signing_key_expires_at: datetime | None
    ordered: bool
    max_rate_per_second: int | None
    created_at: datetime
    updated_at: datetime


class EndpointCreated(EndpointOut):
    secret: str


class SecretOut(BaseModel):
    secret: str
    previous_secret_expires_at: datetime | None


class KeyOut(BaseModel):
    public_key: str = Field(description="`whpk_` + base64 of the raw Ed25519 public key")
    previous_public_key: str | None
    previous_public_key_expires_at: datetime | None


class PublicKey(BaseModel):
    endpoint_id: uuid.UUID
    public_key: str = Field(description="`whpk_` + base64 of the raw Ed25519 public key")
    status: Literal["current", "previous"]
    expires_at: datetime | None = Field(description="a previous key signs until then")
    jwk: dict[str, str] = Field(description="the same key as a JWK (OKP, Ed25519)")


class KeySet(BaseModel):
    keys: list[PublicKey]


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
