from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class Debtor(SQLModel, table=True):
    """A client of an environment; consent is given per debtor."""

    __tablename__ = "debtors"

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id", index=True)
    name: str = Field(max_length=200)
    number: str = Field(max_length=40)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
