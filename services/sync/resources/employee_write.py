"""`PATCH /v1/employees/{id}` for a connection's token on PostgreSQL, on the read's fast
path (issue 18, item 5): one short transaction on the read pool's asyncpg connections
instead of the policy's general path and the ORM.

The transaction runs the read's statement (employee_read.CONNECTION_EMPLOYEE: the
connection live, of this app, environment and debtor, its consent and the employee
within its reach), refused as the rule `employees.update` would refuse it; then locks
the employee's row, checks `If-Match` against it, and writes only the fields that
change together with the `employee.updated` event (shared/outbox.py `event_values`), in
one statement. After the commit the relay is nudged and the data-access log noted, as the
request session's unit of work does on the general path. Nothing is cached: a revoked or
narrowed connection is refused by the next write.

Other callers, SQLite and idempotent requests (whose transaction the idempotency
middleware holds) take the general path (service.update_employee).
"""

from __future__ import annotations

import json
import uuid
from functools import lru_cache
from typing import Any

from fastapi import Response
from sqlalchemy import bindparam, insert, select, update

from services.sync.read_pool import ReadPool, asyncpg_sql, fetch_fields
from services.sync.resources.access import access
from services.sync.resources.employee_read import (
    CONNECTION_EMPLOYEE,
    FIELDS,
    check_connection,
    connection_params,
    connection_scope,
    employee_body,
)
from services.sync.resources.service import changed_fields
from shared.db.base import table_of
from shared.db.types import utcnow
from shared.errors import NotFound
from shared.etag import Version
from shared.last_used import UsageRecorder
from shared.models import Employee, Event
from shared.outbox import event_values
from shared.policy import RULES
from shared.runtime import Runtime
from shared.tokens import Principal
from shared.unit_of_work import UnitOfWork

RULE = RULES["employees.update"]
SCOPE = connection_scope(RULE)

_emp = table_of(Employee)
_events = table_of(Event)

# The employee as it is now, locked until the commit (concurrent writes queue here).
LOCKED = (select(*(_emp.c[name] for name in FIELDS), _emp.c.environment_id,
                 _emp.c.debtor_id)
          .where(_emp.c.id == bindparam("employee_id")).with_for_update())


@lru_cache(maxsize=32)
def _update_with_event(changed: tuple[str, ...]) -> Any:
    """The UPDATE of these fields (and `updated_at`) and the INSERT of the event, one
    statement (a data-modifying CTE): one round trip. One statement per set of fields."""
    updated = (update(_emp).where(_emp.c.id == bindparam("employee_id"))
               .values({name: bindparam(f"set_{name}") for name in (*changed, "updated_at")})
               .returning(_emp.c.id).cte("updated"))
    return insert(_events).values(
        {column.name: bindparam(f"v_{column.name}") for column in _events.columns}
    ).add_cte(updated)


def _event_params(values: dict[str, Any]) -> dict[str, Any]:
    params = {f"v_{column.name}": values[column.name] for column in _events.columns}
    # asyncpg takes JSON as text; written as SQLAlchemy's JSON type writes it on the
    # general path (the column is `json`, which keeps the text as it is given).
    params["v_data"] = json.dumps(values["data"])
    return params


async def update_connection_employee(
    runtime: Runtime, pool: ReadPool, principal: Principal, employee_id: uuid.UUID,
    changes: dict[str, Any], if_match: str | None, recorder: UsageRecorder | None = None,
    log_access: bool = False,
) -> dict[str, Any]:
    """Apply `changes` (the request's fields) to the employee for a connection's token:
    401/403/404 as the rule refuses, 412 if `If-Match` names another version, 422 for a
    null in a field that needs a value; the answer's document."""
    timeout = runtime.settings.database_read_timeout or None
    changed: list[str] = []
    async with pool.transaction(timeout) as tx:
        row: Any = await fetch_fields(tx.fetchrow, CONNECTION_EMPLOYEE,
                                      connection_params(principal, employee_id))
        await check_connection(row, principal, SCOPE, recorder)
        current: Any = await fetch_fields(tx.fetchrow, LOCKED, {"employee_id": employee_id})
        if current is None:  # deleted since the check (a concurrent transaction)
            raise NotFound("no such employee")
        Version(Response(), if_match).check(employee_body(current), "employee")
        changed = changed_fields(current, changes)
        body = employee_body(current)
        if changed:
            event = event_values("employee.updated", current.environment_id,
                                 debtor_id=current.debtor_id, company_id=current.company_id,
                                 employee_id=employee_id, changed_fields=changed)
            sql, order = asyncpg_sql(_update_with_event(tuple(changed)))
            params = {"employee_id": employee_id, "set_updated_at": utcnow(),
                      **{f"set_{name}": changes[name] for name in changed},
                      **_event_params(event)}
            await tx.execute(sql, *(params[name] for name in order))
            body = employee_body(_Changed(current, changes))
    work = UnitOfWork(wants_nudge=bool(changed))
    if log_access and principal.connection_id is not None:
        work.note_access(access(row.environment_id, principal.client_id,
                                principal.connection_id, SCOPE, (employee_id,),
                                changed=bool(changed)))
    await work.flush(runtime.redis)
    return body


class _Changed:
    """A row's fields with the changes applied, for the answer's document."""

    __slots__ = ("_changes", "_row")

    def __init__(self, row: Any, changes: dict[str, Any]) -> None:
        self._row, self._changes = row, changes

    def __getattr__(self, name: str) -> Any:
        changes = self._changes
        return changes[name] if name in changes else getattr(self._row, name)
