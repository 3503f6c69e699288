from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text
from sqlmodel import Field, SQLModel

from shared.models._fields import timestamp_field


class ScopeWording(SQLModel, table=True):
    """One version of the scope wording a consent receipt carries, stored once under the
    SHA-256 of its canonical JSON (shared/receipts/wording.py). Rows are only added,
    never changed: a changed scope text is a new row, so an old receipt's wording stays
    retrievable by its hash."""

    __tablename__ = "scope_wordings"

    sha256: str = Field(primary_key=True, max_length=64)
    # The canonical JSON itself: exactly the bytes whose SHA-256 is `sha256`.
    document: str = Field(sa_type=Text)
    created_at: datetime = timestamp_field()
