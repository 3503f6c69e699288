from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class WebhookAttempt(SQLModel, table=True):
    """One HTTP attempt of a delivery: outcome, response code, latency, error."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "attempt"),)

    id: uuid.UUID = id_field()
    delivery_id: uuid.UUID = Field(foreign_key="webhook_deliveries.id", ondelete="CASCADE")
    attempt: int
    started_at: datetime = timestamp_field()
    duration_ms: int = 0
    status_code: int | None = None
    succeeded: bool = False
    error: str | None = Field(default=None, max_length=1000)
