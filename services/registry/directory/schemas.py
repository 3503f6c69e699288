"""Provisioning bodies and documents: environments, debtors, companies, users."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.models import UserTemplate
from shared.policy.consent import check_consent_templates

Name = Field(min_length=1, max_length=200)
Number = Field(min_length=1, max_length=40)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _unique_templates(value: list[UserTemplate] | None) -> list[UserTemplate] | None:
    return check_consent_templates(value)


class EnvironmentIn(Strict):
    name: str = Name
    consent_templates: list[UserTemplate] | None = None

    _unique = field_validator("consent_templates")(_unique_templates)


class EnvironmentPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    consent_templates: list[UserTemplate] | None = None

    _unique = field_validator("consent_templates")(_unique_templates)


class EnvironmentOut(BaseModel):
    id: uuid.UUID
    name: str
    consent_templates: list[str] | None
    created_at: datetime


class DebtorIn(Strict):
    name: str = Name
    number: str = Number


class DebtorPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    number: str | None = Field(default=None, min_length=1, max_length=40)


class DebtorOut(BaseModel):
    id: uuid.UUID
    environment_id: uuid.UUID
    name: str
    number: str


class CompanyIn(Strict):
    name: str = Name
    number: str = Number
    chamber_of_commerce_number: str | None = Field(default=None, max_length=20)
    address: str | None = Field(default=None, max_length=300)


class CompanyPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    number: str | None = Field(default=None, min_length=1, max_length=40)
    chamber_of_commerce_number: str | None = Field(default=None, max_length=20)
    address: str | None = Field(default=None, max_length=300)


class CompanyOut(BaseModel):
    id: uuid.UUID
    environment_id: uuid.UUID
    debtor_id: uuid.UUID
    name: str
    number: str
    chamber_of_commerce_number: str | None
    address: str | None


class UserIn(Strict):
    email: str = Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    name: str = Name
    template: UserTemplate
    debtor_id: uuid.UUID | None = None
    company_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)
    active: bool = True
    password: str | None = Field(default=None, min_length=12, max_length=200)

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        # Invisible characters (U+200B, U+FEFF, controls) only hide what an address is;
        # the reserved-domain check (shared/policy/sandboxes.py) folds the visible rest.
        if any(unicodedata.category(ch).startswith("C") for ch in value):
            raise ValueError("the email holds control or format characters")
        return value.lower()


class UserPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    template: UserTemplate | None = None
    debtor_id: uuid.UUID | None = None
    company_ids: list[uuid.UUID] | None = Field(default=None, max_length=1000)
    active: bool | None = None
    password: str | None = Field(default=None, min_length=12, max_length=200)


class UserOut(BaseModel):
    id: uuid.UUID
    environment_id: uuid.UUID
    email: str
    name: str
    template: UserTemplate
    debtor_id: uuid.UUID | None
    company_ids: list[uuid.UUID]
    active: bool
    created_at: datetime


class UserList(BaseModel):
    data: list[UserOut]
    next_cursor: str | None


class ReconcileCounts(BaseModel):
    suspended: int = 0
    resumed: int = 0
    expired: int = Field(default=0, description="suspended connections whose consent "
                         "lifetime ran out meanwhile: expired, not resumed")
    narrowed: int = Field(default=0, description="connections narrowed or revoked because "
                          "the user no longer reaches their companies")


class UserChanged(UserOut):
    connections: ReconcileCounts
