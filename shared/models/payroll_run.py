from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class PayrollRun(SQLModel, table=True):
    """A payroll run of a company for one period, with payslip totals in cents."""

    __tablename__ = "payroll_runs"

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id", index=True)
    debtor_id: uuid.UUID = Field(foreign_key="debtors.id")
    company_id: uuid.UUID = Field(foreign_key="companies.id", index=True)
    period: str = Field(max_length=20)
    status: str = Field(default="draft", max_length=16)
    employee_count: int = 0
    gross_total_cents: int = 0
    net_total_cents: int = 0
    finalized_at: datetime | None = timestamp_field(nullable=True, now=False)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
