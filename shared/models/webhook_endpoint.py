from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, Index, LargeBinary, String, false
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, json_field, timestamp_field


class WebhookEndpointStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class SignatureScheme(StrEnum):
    HMAC_SHA256 = "hmac-sha256"  # Standard Webhooks `v1`, with the `whsec_` secret
    ED25519 = "ed25519"  # Standard Webhooks `v1a`, with the endpoint's Ed25519 key pair


class WebhookEndpoint(SQLModel, table=True):
    """A partner app's webhook endpoint: URL, subscribed event types and its signing
    secret, sealed by the vault with the row's identity (and app) as associated data.
    During a rotation the previous secret signs too, until `previous_secret_expires_at`.

    With `signature_scheme` ed25519 it signs with its Ed25519 private key instead (sealed
    the same way; only the `whpk_` public key is ever shown), the previous key beside it
    until `previous_signing_key_expires_at`. `ordered` sends the events of one customer
    one at a time; `max_rate_per_second` caps its deliveries."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_app_id_id", "app_id", "id"),)

    id: uuid.UUID = id_field()
    app_id: uuid.UUID = Field(foreign_key="apps.id", ondelete="CASCADE")
    url: str = Field(max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    events: list[str] = json_field()
    status: WebhookEndpointStatus = Field(
        default=WebhookEndpointStatus.ACTIVE, sa_type=String(16)
    )
    disabled_reason: str | None = Field(default=None, max_length=1000)
    disabled_at: datetime | None = timestamp_field(nullable=True, now=False)
    secret_ciphertext: bytes = Field(sa_type=LargeBinary)
    secret_key_id: str = Field(max_length=64, index=True)
    previous_secret_ciphertext: bytes | None = Field(default=None, sa_type=LargeBinary)
    previous_secret_key_id: str | None = Field(default=None, max_length=64)
    previous_secret_expires_at: datetime | None = timestamp_field(nullable=True, now=False)
    signature_scheme: SignatureScheme = Field(
        default=SignatureScheme.HMAC_SHA256, sa_type=String(16),
        sa_column_kwargs={"server_default": SignatureScheme.HMAC_SHA256.value})
    signing_key_ciphertext: bytes | None = Field(default=None, sa_type=LargeBinary)
    signing_key_key_id: str | None = Field(default=None, max_length=64)
    public_key: str | None = Field(default=None, max_length=64)
    previous_signing_key_ciphertext: bytes | None = Field(default=None, sa_type=LargeBinary)
    previous_signing_key_key_id: str | None = Field(default=None, max_length=64)
    previous_public_key: str | None = Field(default=None, max_length=64)
    previous_signing_key_expires_at: datetime | None = timestamp_field(nullable=True,
                                                                       now=False)
    ordered: bool = Field(default=False, sa_type=Boolean,
                          sa_column_kwargs={"server_default": false()})
    max_rate_per_second: int | None = None
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
