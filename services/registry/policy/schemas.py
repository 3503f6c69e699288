"""The environment's app policy documents."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.registry.connections.schemas import AppRef
from shared.models import UserTemplate


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
        description="the templates that may link third-party apps; null: the default")


class PolicyChange(BaseModel):
    suspended: int
    resumed: int
