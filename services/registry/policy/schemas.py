"""The environment's app policy documents."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.registry.connections.schemas import AppRef
from shared.models import AppState, UserTemplate
from shared.policy.approvals import check_request_templates
from shared.policy.consent import check_consent_templates
from shared.policy.lifetime import MAX_DAYS, MIN_DAYS, check_by_sensitivity, check_days


class AppDecision(BaseModel):
    app: AppRef
    state: AppState = Field(description="allowed, approval_required or blocked")
    blocked: bool = Field(description="state == blocked (kept for older clients)")
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
    default_app_state: AppState = Field(
        description="the state of an app without an entry in `apps`")
    approval_request_templates: list[str] = Field(
        description="the templates that may request an app they may not consent to")
    approval_request_templates_default: bool
    apps: list[AppDecision]


class AppDecisionIn(BaseModel):
    """An app's state; `blocked` (true: blocked, false: allowed) is the older form of
    the same decision. Give one of them."""

    model_config = ConfigDict(extra="forbid")

    state: AppState | None = None
    blocked: bool | None = None
    reason: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _one_state(self) -> AppDecisionIn:
        implied = None if self.blocked is None else (
            AppState.BLOCKED if self.blocked else AppState.ALLOWED)
        if self.state is None and implied is None:
            raise ValueError("give the app's state (or blocked)")
        if self.state is not None and implied is not None and self.state != implied:
            raise ValueError("state and blocked disagree")
        self.state = self.state or implied
        return self


class ApprovalsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_app_state: AppState = Field(
        description="the state of apps without an entry of their own (allowed: the "
                    "default)")
    approval_request_templates: list[UserTemplate] | None = Field(
        description="the templates that may request an app they may not consent to "
                    "(never accountant or employee); null: the consent templates")

    _capable = field_validator("approval_request_templates")(check_request_templates)


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
