"""Field helpers shared by the table models."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field

from shared.db.types import UTCDateTime, utcnow, uuid7


def id_field() -> Any:
    """A time-ordered UUID primary key."""
    return Field(default_factory=uuid7, primary_key=True)


def timestamp_field(*, nullable: bool = False, index: bool = False, now: bool = True) -> Any:
    """A UTC timestamp column; `now` fills it with the creation time."""
    if now:
        return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=nullable, index=index)
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


def json_field(*, default_factory=list, nullable: bool = False) -> Any:
    """A JSON column (lists of scopes, URIs and the like)."""
    return Field(default_factory=default_factory, sa_type=JSON, nullable=nullable)
