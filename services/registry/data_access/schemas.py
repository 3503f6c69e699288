"""The data-access log as the employee and the accountant read it."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.models import AccessAction


class AccessQuery(BaseModel):
    """Filters and paging of a log."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    client_id: str | None = Field(default=None, max_length=80,
                                  description="only this app's entries (its client_id)")
    scope: str | None = Field(default=None, max_length=100,
                              description="only entries of this scope (the slice of data)")
    action: AccessAction | None = Field(default=None, description="read or write")
    since: date | None = Field(default=None, alias="from",
                               description="only days from this UTC day on (YYYY-MM-DD)")
    until: date | None = Field(default=None, alias="to",
                               description="only days up to and including this UTC day")
    limit: int = Field(default=50, description="page size, 1 to 500")
    cursor: str | None = Field(default=None, max_length=512, description="from `next_cursor`")


class AccessApp(BaseModel):
    client_id: str
    name: str


class AccessEntry(BaseModel):
    """The calls of one app, through one connection (or first-party), to one slice of the
    employee's data on one UTC day."""

    app: AccessApp
    connection_id: uuid.UUID | None = Field(
        description="the connection (consent) the app called with; null for a first-party app")
    first_party: bool = Field(description="the SaaS's own app (a user's token), not a "
                              "third-party app")
    scope: str = Field(description="the slice of data: the scope the operation needs")
    action: AccessAction = Field(description="read, or write (changed or added)")
    day: date = Field(description="the UTC day")
    count: int = Field(description="calls that day; a list counts once for each employee "
                       "it returned")
    first_at: datetime
    last_at: datetime


class AccessList(BaseModel):
    data: list[AccessEntry]
    next_cursor: str | None
