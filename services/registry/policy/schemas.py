"""The environment's app policy documents."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.registry.connections.schemas import AppRef
from shared.models import UserTemplate
from shared.policy.consent import check_consent_templates


class AppDecision(BaseModel):
    app: AppRef
    blocked: bool
    reason: str | None
    changed_by: str | None
    updated_at: datetime


class PolicyOut(BaseModel):
    consent_templates: list[str]
    consent_templates_default: bool
    apps: list[AppDecision]


class AppDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    blocked: bool
    reason: str | None = Field(default=None, max_length=1000)


class ConsentTemplatesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consent_templates: list[UserTemplate] | None = Field(
        description="the templates that may link third-party apps (never accountant or "
                    "employee); null: the default")

    _capable = field_validator("consent_templates")(check_consent_templates)


class PolicyChange(BaseModel):
    suspended: int
    resumed: int
