from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class Event(SQLModel, table=True):
    """A change, written in the same transaction as the change itself (the outbox).

    The worker relays it to the webhook endpoints of the apps that may see it; the change
    feed reads it in id order. Payloads are thin: ids and the names of changed fields.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_environment_id_id", "environment_id", "id"),
        Index("ix_events_relayed_at_id", "relayed_at", "id"),
    )

    id: uuid.UUID = id_field()
    type: str = Field(max_length=64)
    environment_id: uuid.UUID = Field(foreign_key="environments.id")
    debtor_id: uuid.UUID | None = Field(default=None, foreign_key="debtors.id")
    company_id: uuid.UUID | None = Field(default=None, foreign_key="companies.id")
    # For connection.* events: the connection, and its app (which always gets them).
    connection_id: uuid.UUID | None = Field(default=None, foreign_key="connections.id", index=True)
    app_id: uuid.UUID | None = Field(default=None, foreign_key="apps.id")
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = timestamp_field()
    # Set once the relay has fanned the event out to deliveries.
    relayed_at: datetime | None = timestamp_field(nullable=True, now=False)
    # The id of the API request whose change wrote it: the worker logs its deliveries
    # under that id (never sent to receivers).
    request_id: str | None = Field(default=None, max_length=128)
