"""The data-access log (docs/product.md, "The data-access log"): which app read or changed
which employee's data, through which connection and scope, per UTC day.

Rows are written only by the worker's flush (services/sync/access_log.py), which adds
the counts noted in Redis to them; `id` is derived from the row's key (`entry_id`), so
a flush adds to the row of its key with one UPSERT on either database. A batch of notes
is applied together with its `DataAccessBatch` row: a batch applied once is never
applied again.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Date, Index, String
from sqlmodel import Field, SQLModel

from shared.models._fields import timestamp_field

# The namespace of the log's row ids (uuid5 of a row's key).
ENTRY_NAMESPACE = uuid.UUID("6f1d5c7e-0b4a-5d3e-9a26-16da7a0c0016")


class AccessAction(StrEnum):
    READ = "read"
    WRITE = "write"


def entry_id(environment_id: uuid.UUID | str, client_id: str,
             connection_id: uuid.UUID | str | None, employee_id: uuid.UUID | str, scope: str,
             action: str, day: date | str, first_party: bool) -> uuid.UUID:
    """The id of the log row that aggregates accesses with this key."""
    key = " ".join((str(environment_id), client_id, str(connection_id or "-"),
                    str(employee_id), scope, action, str(day), "1" if first_party else "0"))
    return uuid.uuid5(ENTRY_NAMESPACE, key)


class DataAccess(SQLModel, table=True):
    """The accesses of one app (through one connection, or first-party) to one slice of
    one employee's data on one UTC day: how many calls, the first and the last."""

    __tablename__ = "data_access_log"
    __table_args__ = (
        # The employee's log, newest day first (GET /v1/me/data-access and the
        # accountant's GET /v1/environment/employees/{id}/data-access).
        Index("ix_data_access_log_employee_id_day_id", "employee_id", "day", "id"),
        # The retention purge.
        Index("ix_data_access_log_day", "day"),
    )

    id: uuid.UUID = Field(primary_key=True)  # entry_id() of the key below
    environment_id: uuid.UUID
    employee_id: uuid.UUID
    client_id: str = Field(max_length=255)
    connection_id: uuid.UUID | None = Field(default=None)  # None: a first-party app
    first_party: bool = False
    scope: str = Field(max_length=100)
    action: AccessAction = Field(sa_type=String(10))
    day: date = Field(sa_column=Column(Date, nullable=False))
    count: int = Field(sa_column=Column(BigInteger, nullable=False))
    first_at: datetime = timestamp_field(now=False)
    last_at: datetime = timestamp_field(now=False)


class DataAccessBatch(SQLModel, table=True):
    """A batch of noted accesses that the flush has applied (its Redis key may still be
    there if the flush stopped before deleting it: then it is not applied again)."""

    __tablename__ = "data_access_batches"

    id: str = Field(primary_key=True, max_length=64)
    applied_at: datetime = timestamp_field(index=True)
