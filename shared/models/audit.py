from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class AuditEvent(SQLModel, table=True):
    """An append-only audit record; each carries the MAC of the one before it in its
    environment's chain, so an edited or deleted row is found by `koppel audit verify`.

    `hash` is an HMAC-SHA256 under a key derived from the vault key `mac_key_id`
    (shared/audit_mac.py): without the key ring the chain cannot be recomputed."""

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("environment_id", "seq"),
        Index("ix_audit_events_environment_id_id", "environment_id", "id"),
    )

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id")
    seq: int
    action: str = Field(max_length=64)
    actor_type: str = Field(max_length=16)  # user, app, operator, system
    actor_id: str | None = Field(default=None, max_length=100)
    subject_type: str = Field(max_length=32)
    subject_id: str | None = Field(default=None, max_length=100)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = timestamp_field()
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    # The key ring key the MAC was made with; None only on rows written before MACs
    # (migration 0011 re-chains those), which verification refuses.
    mac_key_id: str | None = Field(default=None, max_length=64)


class AuditHead(SQLModel, table=True):
    """The last link of an environment's audit chain; locking it orders the appends."""

    __tablename__ = "audit_heads"

    environment_id: uuid.UUID = Field(foreign_key="environments.id", primary_key=True)
    seq: int = 0
    hash: str = Field(max_length=64)


class AuditCheckpoint(SQLModel, table=True):
    """A signed statement of an environment's chain head at one moment
    (shared/audit_checkpoints.py): a compact JWS under the attestation key. Copies kept
    outside Koppel let `koppel audit verify --checkpoints` find a cut or deleted chain."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (
        Index("ix_audit_checkpoints_environment_id_id", "environment_id", "id"),
    )

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id")
    seq: int
    hash: str = Field(max_length=64)
    kid: str = Field(max_length=64)
    jws: str = Field(sa_type=Text)
    created_at: datetime = timestamp_field()
