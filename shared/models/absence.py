from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class Absence(SQLModel, table=True):
    """A sickness absence (health data, a special category): dates and percentage only."""

    __tablename__ = "absences"

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id", index=True)
    debtor_id: uuid.UUID = Field(foreign_key="debtors.id")
    company_id: uuid.UUID = Field(foreign_key="companies.id")
    employee_id: uuid.UUID = Field(foreign_key="employees.id", index=True, ondelete="CASCADE")
    start_date: date
    end_date: date | None = None
    percentage: int = 100
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
