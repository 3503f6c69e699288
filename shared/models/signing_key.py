from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, LargeBinary
from sqlmodel import Field, SQLModel

from shared.models._fields import timestamp_field


class SigningKey(SQLModel, table=True):
    """A JWT signing key; the private half is sealed by the vault, the public half is in JWKS."""

    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    alg: str = Field(max_length=10)
    public_jwk: dict[str, Any] = Field(sa_type=JSON)
    private_key_ciphertext: bytes = Field(sa_type=LargeBinary)
    private_key_key_id: str = Field(max_length=64, index=True)
    active: bool = True
    created_at: datetime = timestamp_field()
    # Once retired, the public key stays published until every token it signed expired.
    retired_at: datetime | None = timestamp_field(nullable=True, now=False)
    publish_until: datetime | None = timestamp_field(nullable=True, now=False)
