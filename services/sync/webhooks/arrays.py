"""A batch of deliveries as a few array parameters on PostgreSQL, not a parameter (or a
statement) per delivery.

The dispatcher's statements take up to a batch's ids at once. As an `IN (...)` list each
id is a placeholder of its own: SQLAlchemy renders the statement again for every list
length, psycopg converts and prepares each such text anew and adapts every id on its
own; and an executemany INSERT is one statement per row. As one array parameter
(`= ANY(:ids)`, `unnest`) the statement's text is the same for any batch, prepared once,
and the driver adapts a whole list in one go. SQLite has no arrays: it keeps the lists
and the executemany.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Integer, Uuid, any_, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from shared.db.types import UTCDateTime

_UUIDS = ARRAY(Uuid())
_INTEGERS = ARRAY(Integer())


def _times(name: str) -> BindParameter:
    """A timestamp array parameter, each item checked and converted as a UTCDateTime
    column's value is (a naive time is refused, not taken for the server's zone)."""
    return bindparam(name, type_=ARRAY(UTCDateTime()))


def among(column: Any, values: Collection[Any], dialect: str, *, integers: bool = False
          ) -> ColumnElement[bool]:
    """`column IN values`: on PostgreSQL `column = ANY(array)`, one parameter."""
    if dialect != "postgresql":
        return column.in_(values)
    array = bindparam("among", list(values), type_=_INTEGERS if integers else _UUIDS,
                      unique=True)
    return column == any_(array)


# The attempt rows of a batch (PostgreSQL), one array per column; an (delivery, attempt)
# already written is left alone, as the executemany INSERT does (ON CONFLICT DO NOTHING).
INSERT_ATTEMPTS = text(
    "INSERT INTO webhook_attempts (id, delivery_id, attempt, started_at, duration_ms, "
    "status_code, succeeded, error) "
    "SELECT * FROM unnest(CAST(:id AS uuid[]), CAST(:delivery_id AS uuid[]), "
    "CAST(:attempt AS integer[]), CAST(:started_at AS timestamptz[]), "
    "CAST(:duration_ms AS integer[]), CAST(:status_code AS integer[]), "
    "CAST(:succeeded AS boolean[]), CAST(:error AS varchar[])) "
    "ON CONFLICT (delivery_id, attempt) DO NOTHING"
).bindparams(_times("started_at"))  # checked like the column: never a naive time

# A relayed batch's deliveries (PostgreSQL): per delivery its id, endpoint, app, the
# index of its event in the event arrays (1-based), when it is due (NULL: parked in its
# line) and its line; per event its id, type, message id and body text, given once
# however many endpoints receive it.
INSERT_DELIVERIES = text(
    "INSERT INTO webhook_deliveries (id, endpoint_id, app_id, event_id, type, message_id, "
    "payload, status, attempts, max_attempts, next_attempt_at, rate_slot, created_at, "
    "sequence_key) "
    "SELECT d.id, d.endpoint_id, d.app_id, e.id, e.type, e.message_id, "
    "CAST(e.payload AS json), :status, 0, :max_attempts, d.next_attempt_at, false, "
    ":created_at, d.sequence_key "
    "FROM unnest(CAST(:id AS uuid[]), CAST(:endpoint_id AS uuid[]), CAST(:app_id AS uuid[]), "
    "CAST(:event AS integer[]), CAST(:next_attempt_at AS timestamptz[]), "
    "CAST(:sequence_key AS varchar[])) "
    "AS d(id, endpoint_id, app_id, event, next_attempt_at, sequence_key) "
    "JOIN unnest(CAST(:event_id AS uuid[]), CAST(:type AS varchar[]), "
    "CAST(:message_id AS varchar[]), CAST(:payload AS text[])) WITH ORDINALITY "
    "AS e(id, type, message_id, payload, n) ON e.n = d.event"
).bindparams(_times("next_attempt_at"), bindparam("created_at", type_=UTCDateTime()))
