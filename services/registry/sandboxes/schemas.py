"""Sandbox bodies and documents."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models import UserTemplate


class SandboxIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)


class CompanyRef(BaseModel):
    id: uuid.UUID
    name: str


class DebtorRef(BaseModel):
    id: uuid.UUID
    name: str
    companies: list[CompanyRef]


class SandboxLogin(BaseModel):
    id: uuid.UUID
    template: UserTemplate
    email: str
    name: str


class SandboxLoginWithPassword(SandboxLogin):
    password: str = Field(description="shown only in the answer that created the sandbox")


class SandboxOut(BaseModel):
    id: uuid.UUID = Field(description="the sandbox's environment id (also in its events)")
    name: str
    sandbox: Literal[True] = True
    created_at: datetime
    employee_count: int
    debtors: list[DebtorRef]
    users: list[SandboxLogin] = Field(description="one login of every template")


class SandboxCreated(SandboxOut):
    users: list[SandboxLoginWithPassword] = Field(  # type: ignore[assignment]
        description="one login of every template, with its password (shown only now)")


class SandboxList(BaseModel):
    data: list[SandboxOut]


class ChangeKind(StrEnum):
    NEW_HIRE = "new_hire"
    SALARY_CHANGE = "salary_change"
    PAYROLL_RUN_FINALIZED = "payroll_run_finalized"
    ABSENCE = "absence"


class SimulationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ChangeKind | None = Field(default=None,
                                    description="the change to make; a random one if omitted")
    company_id: uuid.UUID | None = Field(
        default=None, description="make it in this company of the sandbox; any if omitted")


class SimulationOut(BaseModel):
    kind: ChangeKind
    description: str
    events: list[str] = Field(description="the event types written, in order")
    ids: dict[str, uuid.UUID] = Field(description="the objects the change made or touched")
