from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class WageComponent(SQLModel, table=True):
    """A salary or wage component of an employee (sensitive), amounts in cents."""

    __tablename__ = "wage_components"

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id", index=True)
    debtor_id: uuid.UUID = Field(foreign_key="debtors.id")
    company_id: uuid.UUID = Field(foreign_key="companies.id")
    employee_id: uuid.UUID = Field(foreign_key="employees.id", index=True, ondelete="CASCADE")
    code: str = Field(max_length=40)
    description: str = Field(max_length=200)
    amount_cents: int
    currency: str = Field(default="EUR", max_length=3)
    valid_from: date
    valid_to: date | None = None
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
