from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import String
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class LeaveType(StrEnum):
    """The kinds of leave a request may be for (the balances use the same names)."""

    STATUTORY = "statutory"
    EXTRA = "extra"
    SPECIAL = "special"
    PARENTAL = "parental"
    UNPAID = "unpaid"


class LeaveRequestStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class LeaveRequest(SQLModel, table=True):
    """An employee's request for leave of one type over a span of days, in hours."""

    __tablename__ = "leave_requests"

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id", index=True)
    debtor_id: uuid.UUID = Field(foreign_key="debtors.id")
    company_id: uuid.UUID = Field(foreign_key="companies.id")
    employee_id: uuid.UUID = Field(foreign_key="employees.id", index=True, ondelete="CASCADE")
    leave_type: LeaveType = Field(sa_type=String(40))
    start_date: date
    end_date: date
    hours: float
    status: LeaveRequestStatus = Field(default=LeaveRequestStatus.REQUESTED, sa_type=String(16))
    note: str | None = Field(default=None, max_length=500)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
