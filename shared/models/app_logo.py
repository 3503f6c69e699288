from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import LargeBinary
from sqlmodel import Field, SQLModel

from shared.models._fields import timestamp_field


class AppLogo(SQLModel, table=True):
    """An app's logo, fetched once at registration and served by Koppel itself, so the
    consent page loads nothing from third parties."""

    __tablename__ = "app_logos"

    app_id: uuid.UUID = Field(foreign_key="apps.id", primary_key=True, ondelete="CASCADE")
    content_type: str = Field(max_length=32)
    data: bytes = Field(sa_type=LargeBinary)
    sha256: str = Field(max_length=64)
    source_uri: str = Field(max_length=2000)
    fetched_at: datetime = timestamp_field()
