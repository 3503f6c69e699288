from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import String
from sqlmodel import Field, SQLModel

from shared.models._fields import timestamp_field


class AppState(StrEnum):
    """What an environment's policy says about a third-party app (shared/policy/approvals.py):
    users link it themselves, ask for approval first, or may not link it at all."""

    ALLOWED = "allowed"
    APPROVAL_REQUIRED = "approval_required"
    BLOCKED = "blocked"


class EnvironmentAppPolicy(SQLModel, table=True):
    """An environment's decision about one third-party app: its state.

    No row means the app follows the environment's `default_app_state` (allowed unless
    the accountant sets it). Blocking suspends the app's connections in the environment;
    allowing it again resumes them. `approval_required` leaves existing connections as
    they are: new consents need an approved consent request.
    """

    __tablename__ = "environment_app_policies"

    environment_id: uuid.UUID = Field(foreign_key="environments.id", primary_key=True)
    app_id: uuid.UUID = Field(foreign_key="apps.id", primary_key=True, index=True)
    state: AppState = Field(default=AppState.ALLOWED, sa_type=String(20))
    changed_by: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=1000)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()

    @property
    def blocked(self) -> bool:
        """The state as the API's older `blocked` field says it."""
        return self.state == AppState.BLOCKED
