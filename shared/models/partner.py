from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class Partner(SQLModel, table=True):
    """An organisation that builds apps and registers them with an initial access token."""

    __tablename__ = "partners"

    id: uuid.UUID = id_field()
    name: str = Field(max_length=200)
    # Keyed digest of the initial access token; None once revoked.
    initial_access_token_digest: str | None = Field(default=None, max_length=64, unique=True)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
