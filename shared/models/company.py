from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class Company(SQLModel, table=True):
    """A payroll company of a debtor; employees belong to a company."""

    __tablename__ = "companies"

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id", index=True)
    debtor_id: uuid.UUID = Field(foreign_key="debtors.id", index=True)
    name: str = Field(max_length=200)
    number: str = Field(max_length=40)
    chamber_of_commerce_number: str | None = Field(default=None, max_length=20)
    address: str | None = Field(default=None, max_length=300)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
