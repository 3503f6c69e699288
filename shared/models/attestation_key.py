from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, LargeBinary
from sqlmodel import Field, SQLModel

from shared.models._fields import timestamp_field


class AttestationKey(SQLModel, table=True):
    """A key that signs Koppel's statements (audit checkpoints), never tokens.

    A table of its own, apart from `signing_keys`, so that no token verifier can ever
    find it; the private half is sealed by the vault, and every public half stays
    published at the attestation JWKS for good (shared/attestation.py)."""

    __tablename__ = "attestation_keys"

    kid: str = Field(primary_key=True, max_length=64)
    alg: str = Field(max_length=10)
    public_jwk: dict[str, Any] = Field(sa_type=JSON)
    private_key_ciphertext: bytes = Field(sa_type=LargeBinary)
    private_key_key_id: str = Field(max_length=64, index=True)
    active: bool = True
    created_at: datetime = timestamp_field()
    retired_at: datetime | None = timestamp_field(nullable=True, now=False)
