from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class Employment(SQLModel, table=True):
    """An employment (contract) of an employee: start, end, hours, function, department."""

    __tablename__ = "employments"

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id", index=True)
    debtor_id: uuid.UUID = Field(foreign_key="debtors.id")
    company_id: uuid.UUID = Field(foreign_key="companies.id")
    employee_id: uuid.UUID = Field(foreign_key="employees.id", index=True, ondelete="CASCADE")
    start_date: date
    end_date: date | None = None
    hours_per_week: float | None = None
    function: str | None = Field(default=None, max_length=200)
    department: str | None = Field(default=None, max_length=200)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
