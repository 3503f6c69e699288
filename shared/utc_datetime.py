"""`UTCDatetime`: a request's timestamp, with its offset, normalised to UTC while the
input is validated.

A timestamp near the ends of the calendar with an offset (`0001-01-01T00:00:00+01:00`,
`9999-12-31T23:59:59-01:00`) parses, but has no UTC equivalent: converting it later, in
a query, raised OverflowError deep in SQLAlchemy (a 500). Converting it here turns that
into a validation error (422) before anything runs.

    class Filters(BaseModel):
        created_after: UTCDatetime | None = None
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


def to_utc(value: datetime) -> datetime:
    """`value` in UTC; ValueError (a validation error) if it has no UTC equivalent."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time lies outside the range of UTC timestamps") from None


UTCDatetime = Annotated[AwareDatetime, AfterValidator(to_utc)]
