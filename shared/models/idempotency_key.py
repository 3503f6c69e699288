from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class IdempotencyKey(SQLModel, table=True):
    """The stored answer to a POST or PATCH sent with an `Idempotency-Key`
    (shared/idempotency/middleware.py): written in the same transaction as the request's work, so a
    retry finds either the work and its answer, or neither.

    `owner` is a digest of who called (the token's client and subject, or the credential
    itself), so keys of different callers never meet; `fingerprint` is the SHA-256 of the
    method, path and body. The answer (status, headers, body) is sealed by the vault with
    the row's identity and owner as associated data: it may carry a secret shown once."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "key"),)

    id: uuid.UUID = id_field()
    owner: str = Field(max_length=64)
    key: str = Field(max_length=255)
    fingerprint: str = Field(max_length=64)
    status_code: int
    answer_ciphertext: bytes = Field(sa_type=LargeBinary)
    answer_key_id: str = Field(max_length=64, index=True)
    created_at: datetime = timestamp_field()
    expires_at: datetime = timestamp_field(index=True, now=False)
