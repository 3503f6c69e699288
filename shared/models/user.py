from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import String
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class UserTemplate(StrEnum):
    """The role of a user (docs/product.md section 3)."""

    ACCOUNTANT = "accountant"
    MASTER_CLIENT = "master_client"
    COMPANY = "company"
    HR_MANAGER = "hr_manager"
    PAYROLL_HR_MANAGER = "payroll_hr_manager"
    EMPLOYEE = "employee"


# The templates that may link third-party apps unless the environment says otherwise.
DEFAULT_CONSENT_TEMPLATES: tuple[UserTemplate, ...] = (
    UserTemplate.MASTER_CLIENT,
    UserTemplate.COMPANY,
    UserTemplate.HR_MANAGER,
    UserTemplate.PAYROLL_HR_MANAGER,
)


class User(SQLModel, table=True):
    """A login of one environment. The email is the login name, unique platform-wide."""

    __tablename__ = "users"

    id: uuid.UUID = id_field()
    environment_id: uuid.UUID = Field(foreign_key="environments.id", index=True)
    email: str = Field(max_length=320, unique=True)
    name: str = Field(max_length=200)
    password_hash: str = Field(max_length=200)
    template: UserTemplate = Field(sa_type=String(32))
    active: bool = True
    # The debtor a master client, company login, HR manager or employee belongs to;
    # None for accountants, who reach the whole environment.
    debtor_id: uuid.UUID | None = Field(default=None, foreign_key="debtors.id", index=True)
    employee_id: uuid.UUID | None = Field(default=None, foreign_key="employees.id")
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


class UserCompany(SQLModel, table=True):
    """The companies a company-level user reaches."""

    __tablename__ = "user_companies"

    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    company_id: uuid.UUID = Field(foreign_key="companies.id", primary_key=True, index=True)
