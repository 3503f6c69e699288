from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class LeaveBalance(SQLModel, table=True):
    """An employee's leave balance of one type and year, in hours."""

    __tablename__ = "leave_balances"

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id", index=True)
    debtor_id: uuid.UUID = Field(foreign_key="debtors.id")
    company_id: uuid.UUID = Field(foreign_key="companies.id")
    employee_id: uuid.UUID = Field(foreign_key="employees.id", index=True, ondelete="CASCADE")
    leave_type: str = Field(max_length=40)
    year: int
    balance_hours: float
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
