"""The environment's app policy documents."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.registry.connections.schemas import AppRef
from shared.models import UserTemplate
from shared.policy.consent import check_consent_templates
from shared.policy.lifetime import MAX_DAYS, MIN_DAYS, check_by_sensitivity, check_days


class AppDecision(BaseModel):
    app: AppRef
    blocked: bool
    reason: str | None
    changed_by: str | None
    updated_at: datetime


class PolicyOut(BaseModel):
    consent_templates: list[str]
    consent_templates_default: bool
    consent_lifetime_days: int | None = Field(
        description="days a consent lasts before it must be renewed; null: no expiry")
    consent_lifetime_days_by_sensitivity: dict[str, int] = Field(
        description="shorter lifetimes for connections holding scopes of a sensitivity; "
                    "the shortest that applies wins")
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


class ConsentLifetimeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consent_lifetime_days: int | None = Field(
        description=f"days a consent lasts, {MIN_DAYS} to {MAX_DAYS}; null: no expiry")
    consent_lifetime_days_by_sensitivity: dict[str, int] | None = Field(
        default=None, description="shorter lifetimes by scope sensitivity (normal, personal, "
        'sensitive, special_category; "special" is short for special_category), e.g. '
        '{"special_category": 90}; null or {}: none')

    _days = field_validator("consent_lifetime_days")(check_days)
    _by_sensitivity = field_validator("consent_lifetime_days_by_sensitivity")(
        check_by_sensitivity)


class ConsentLifetimeChange(BaseModel):
    consent_lifetime_days: int | None
    consent_lifetime_days_by_sensitivity: dict[str, int]
    updated: int = Field(description="live connections whose expires_at changed")


class PolicyChange(BaseModel):
    suspended: int
    resumed: int
    expired: int = Field(default=0, description="suspended connections whose consent "
                         "lifetime ran out meanwhile: expired, not resumed")
