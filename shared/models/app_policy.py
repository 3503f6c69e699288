from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.models._fields import timestamp_field


class EnvironmentAppPolicy(SQLModel, table=True):
    """An environment's decision about one third-party app: allowed or blocked.

    No row means the app is allowed. Blocking suspends the app's connections in the
    environment; allowing it again resumes them.
    """

    __tablename__ = "environment_app_policies"

    environment_id: uuid.UUID = Field(foreign_key="environments.id", primary_key=True)
    app_id: uuid.UUID = Field(foreign_key="apps.id", primary_key=True, index=True)
    blocked: bool = False
    changed_by: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=1000)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
