from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Index, String, UniqueConstraint, false, text
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class DeliveryStatus(StrEnum):
    # Waiting for its next attempt (or in one); with no next_attempt_at, waiting its turn
    # behind an earlier delivery of its line (sequence_key), which releases it.
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # gave up, or the endpoint was disabled; may be redelivered
    DROPPED = "dropped"  # the app may no longer see the event (consent revoked)


class WebhookDelivery(SQLModel, table=True):
    """One message to one endpoint: at most one per event and endpoint. `message_id` is
    the `webhook-id` header, the same on every attempt; `payload` the exact body."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        # Only deliveries that wait their turn (ordered endpoints, recoveries) have a
        # sequence key: the index costs the hot path nothing. With the status, the head
        # of a line (its first pending delivery) is one index probe however long its
        # history.
        Index("ix_webhook_deliveries_sequence", "endpoint_id", "sequence_key", "status", "id",
              postgresql_where=text("sequence_key IS NOT NULL"),
              sqlite_where=text("sequence_key IS NOT NULL")),
        # Deliveries put off to a slot of their endpoint's rate: the next such slot is one
        # probe (when to wake the dispatcher).
        Index("ix_webhook_deliveries_rate_slot", "next_attempt_at",
              postgresql_where=text("rate_slot"), sqlite_where=text("rate_slot")),
    )

    id: uuid.UUID = id_field()
    endpoint_id: uuid.UUID = Field(foreign_key="webhook_endpoints.id", ondelete="CASCADE")
    app_id: uuid.UUID = Field(foreign_key="apps.id", index=True, ondelete="CASCADE")
    event_id: uuid.UUID | None = Field(default=None, foreign_key="events.id", index=True)
    type: str = Field(max_length=64)
    message_id: str = Field(max_length=80)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: DeliveryStatus = Field(default=DeliveryStatus.PENDING, sa_type=String(16))
    attempts: int = 0
    max_attempts: int = 1
    next_attempt_at: datetime | None = timestamp_field(nullable=True)
    last_attempt_at: datetime | None = timestamp_field(nullable=True, now=False)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=1000)
    # Set: sent only after every earlier pending delivery of the endpoint with the same
    # key has succeeded or finally failed (the customer of an ordered endpoint, or a
    # recovery's one line).
    sequence_key: str | None = Field(default=None, max_length=80)
    # Set: its endpoint's rate put this attempt off to a slot reserved for it (its
    # next_attempt_at); it goes then without taking another.
    rate_slot: bool = Field(default=False, sa_type=Boolean, sa_column_kwargs={
        "server_default": false()})
    created_at: datetime = timestamp_field()
    finished_at: datetime | None = timestamp_field(nullable=True, now=False)
