"""Bodies of the data API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.models import LeaveRequestStatus, LeaveType

EARLIEST_LEAVE_DAY, LATEST_LEAVE_DAY = date(2000, 1, 1), date(2100, 12, 31)
MAX_LEAVE_DAYS = 366


class DebtorOut(BaseModel):
    id: uuid.UUID
    name: str
    number: str


class CompanyOut(BaseModel):
    id: uuid.UUID
    debtor_id: uuid.UUID
    name: str
    number: str
    chamber_of_commerce_number: str | None
    address: str | None


class EmployeeOut(BaseModel):
    id: uuid.UUID
    company_id: uuid.UUID
    number: str
    first_name: str
    last_name: str
    birth_date: date | None
    email: str | None


class EmployeeUpdate(BaseModel):
    """Any of an employee's personal fields; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    first_name: str | None = Field(default=None, min_length=1, max_length=100)
    last_name: str | None = Field(default=None, min_length=1, max_length=100)
    birth_date: date | None = None
    email: str | None = Field(default=None, max_length=320,
                              pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class ChangeOut(BaseModel):
    id: uuid.UUID
    type: str
    timestamp: datetime
    data: dict[str, Any]


class Page(BaseModel):
    data: list[Any]
    next_cursor: str | None


class ChangesPage(BaseModel):
    data: list[ChangeOut]
    next_cursor: str | None
    has_more: bool


class EmploymentOut(BaseModel):
    id: uuid.UUID
    employee_id: uuid.UUID
    start_date: date
    end_date: date | None
    hours_per_week: float | None
    function: str | None
    department: str | None


class BankAccountOut(BaseModel):
    id: uuid.UUID
    employee_id: uuid.UUID
    iban: str
    account_holder: str


class BankAccountUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    iban: str | None = Field(default=None, pattern=r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
    account_holder: str | None = Field(default=None, min_length=1, max_length=200)


class WageComponentOut(BaseModel):
    id: uuid.UUID
    employee_id: uuid.UUID
    code: str
    description: str
    amount_cents: int
    currency: str
    valid_from: date
    valid_to: date | None


class LeaveBalanceOut(BaseModel):
    id: uuid.UUID
    employee_id: uuid.UUID
    leave_type: str
    year: int
    balance_hours: float


class AbsenceOut(BaseModel):
    id: uuid.UUID
    employee_id: uuid.UUID
    start_date: date
    end_date: date | None
    percentage: int


class PayrollRunOut(BaseModel):
    id: uuid.UUID
    company_id: uuid.UUID
    period: str
    status: str
    employee_count: int
    gross_total_cents: int
    net_total_cents: int
    finalized_at: datetime | None


class EmployeeCreate(BaseModel):
    """A new employee of the company; the number is unique within the company."""

    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=1, max_length=40)
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    birth_date: date | None = None
    email: str | None = Field(default=None, max_length=320,
                              pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class WageComponentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=40)
    description: str = Field(min_length=1, max_length=200)
    amount_cents: int = Field(ge=-10**12, le=10**12)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    valid_from: date
    valid_to: date | None = None


class WageComponentEnd(BaseModel):
    """The last day the component applies."""

    model_config = ConfigDict(extra="forbid")

    valid_to: date


class EmploymentEnd(BaseModel):
    """The last day of the employment."""

    model_config = ConfigDict(extra="forbid")

    end_date: date


class LeaveRequestOut(BaseModel):
    id: uuid.UUID
    employee_id: uuid.UUID
    leave_type: LeaveType
    start_date: date
    end_date: date
    hours: float
    status: LeaveRequestStatus
    note: str | None
    created_at: datetime
    updated_at: datetime


class LeaveRequestCreate(BaseModel):
    """A request for leave from `start_date` to `end_date` (both included), in hours: at
    most a year long, within 2000..2100, and at most 24 hours per day of the span."""

    model_config = ConfigDict(extra="forbid")

    leave_type: LeaveType
    start_date: date = Field(ge=EARLIEST_LEAVE_DAY, le=LATEST_LEAVE_DAY)
    end_date: date = Field(ge=EARLIEST_LEAVE_DAY, le=LATEST_LEAVE_DAY)
    hours: float = Field(gt=0, le=MAX_LEAVE_DAYS * 24, allow_inf_nan=False)
    note: str | None = Field(default=None, min_length=1, max_length=500)

    @model_validator(mode="after")
    def _span(self) -> LeaveRequestCreate:
        days = (self.end_date - self.start_date).days + 1
        if days < 1:
            raise ValueError("end_date is before start_date")
        if days > MAX_LEAVE_DAYS:
            raise ValueError(f"a leave request spans at most {MAX_LEAVE_DAYS} days")
        if self.hours > days * 24:
            raise ValueError(f"hours exceed 24 per day of the {days}-day span")
        return self


class LeaveRequestUpdate(BaseModel):
    """The new status: `approved`, `rejected` or `cancelled` (a decision is final; an
    approved request may still be cancelled)."""

    model_config = ConfigDict(extra="forbid")

    status: LeaveRequestStatus
