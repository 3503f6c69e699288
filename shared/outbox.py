"""The transactional outbox: changes write their events in the same transaction.

The sync worker relays them to webhook deliveries; the change feed reads them. Writing
an event notes a nudge of the relay on the transaction's unit of work, sent after the
commit (shared/unit_of_work.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shared.db.types import utcnow, uuid7
from shared.events import check_data
from shared.models import Connection, Event
from shared.request_id import current_request_id
from shared.unit_of_work import unit_of_work


def event_values(
    type: str,
    environment_id: uuid.UUID,
    *,
    debtor_id: uuid.UUID | None = None,
    company_id: uuid.UUID | None = None,
    connection_id: uuid.UUID | None = None,
    app_id: uuid.UUID | None = None,
    **data: Any,
) -> dict[str, Any]:
    """Every column of a change's event row (`emit` adds it to a session; the sync API's
    fast write inserts these values itself). `data` holds ids and changed field names;
    the body must be what the event catalogue (shared/events.py) says of its type. The
    current request's id goes on the row (not in the payload): the worker logs the
    event's deliveries under it."""
    body = {"environment_id": str(environment_id)}
    if debtor_id:
        body["debtor_id"] = str(debtor_id)
    if company_id:
        body["company_id"] = str(company_id)
    if connection_id:
        body["connection_id"] = str(connection_id)
    body.update({k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in data.items()})
    check_data(type, body)
    return {"id": uuid7(), "type": type, "environment_id": environment_id,
            "debtor_id": debtor_id, "company_id": company_id,
            "connection_id": connection_id, "app_id": app_id, "data": body,
            "created_at": utcnow(), "relayed_at": None, "request_id": current_request_id()}


def emit(session: Session | AsyncSession, type: str, environment_id: uuid.UUID,
         **fields: Any) -> Event:
    """Add an event (`event_values`) to the session's transaction; the relay is nudged
    after the commit."""
    event = Event(**event_values(type, environment_id, **fields))
    session.add(event)
    unit_of_work(session).nudge_relay()
    return event


def connection_event(type: str, connection: Connection, **data: Any) -> dict[str, Any]:
    """The arguments of `emit` for a `connection.*` event about `connection`."""
    return {
        "type": type,
        "environment_id": connection.environment_id,
        "debtor_id": connection.debtor_id,
        "connection_id": connection.id,
        "app_id": connection.app_id,
        **data,
    }
