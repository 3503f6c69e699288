from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class BankAccount(SQLModel, table=True):
    """An employee's bank account: IBAN and account holder (sensitive)."""

    __tablename__ = "bank_accounts"

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id", index=True)
    debtor_id: uuid.UUID = Field(foreign_key="debtors.id")
    company_id: uuid.UUID = Field(foreign_key="companies.id")
    employee_id: uuid.UUID = Field(foreign_key="employees.id", index=True, ondelete="CASCADE")
    iban: str = Field(max_length=34)
    account_holder: str = Field(max_length=200)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
