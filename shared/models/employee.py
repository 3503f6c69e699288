from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class Employee(SQLModel, table=True):
    """An employee of a payroll company (personal info; other slices live beside it)."""

    __tablename__ = "employees"
    __table_args__ = (UniqueConstraint("company_id", "number"),)

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id", index=True)
    debtor_id: uuid.UUID = Field(foreign_key="debtors.id", index=True)
    company_id: uuid.UUID = Field(foreign_key="companies.id", index=True)
    number: str = Field(max_length=40)
    first_name: str = Field(max_length=100)
    last_name: str = Field(max_length=100)
    birth_date: date | None = None
    email: str | None = Field(default=None, max_length=320)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
