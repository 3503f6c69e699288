"""The data-access log's side of the data API: each call notes which employees' data it
read or changed (shared/data_access.py), on the request session's unit of work, so the
note goes to Redis after the commit in the round trip of the unit's other notes (a
rolled-back write is not logged).

The slice is the scope of the operation's rule (`employee.bankaccount.read` for a read of
bank accounts, `employee.bankaccount` for a change), the action `write` when that scope
is a write scope. A write that changed nothing (the same values, an end date or status
it already had) only showed the record: it is a `read` of the write scope's read twin.
Calls of a connection are third-party; a user's token is a first-party
app's (`first_party`). Not logged (KOPPEL_DATA_ACCESS_LOG=false): nothing is noted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from fastapi import Request
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.data_access import Access
from shared.models import AccessAction
from shared.policy import Caller, CallerKind
from shared.scopes import SCOPES
from shared.unit_of_work import unit_of_work


def logging_on(request: Request) -> bool:
    """Whether this service logs data accesses (KOPPEL_DATA_ACCESS_LOG)."""
    return bool(request.app.state.runtime.settings.data_access_log)


def access(environment_id: uuid.UUID, client_id: str, connection_id: uuid.UUID | None,
           scope: str, employee_ids: tuple[uuid.UUID, ...], changed: bool = True) -> Access:
    """An access under the rule's `scope` (a connection's, or a first-party app's when
    `connection_id` is None): `write` for a write scope, except a write that changed
    nothing (`changed` False), which is a `read` of the scope's read twin."""
    if not changed and not scope.endswith(".read") and f"{scope}.read" in SCOPES:
        scope = f"{scope}.read"
    action = AccessAction.READ if scope.endswith(".read") else AccessAction.WRITE
    return Access(environment_id, client_id, connection_id, connection_id is None, scope,
                  action.value, employee_ids)


def access_of(caller: Caller, employee_ids: Iterable[uuid.UUID], changed: bool = True
              ) -> Access | None:
    """The access of an authorized caller (its rule set) to these employees' data; None
    when there is nothing to log (no employee, a rule without a scope)."""
    ids = tuple(employee_ids)
    rule = caller.rule
    if not ids or rule is None or not rule.scopes or caller.environment_id is None:
        return None
    connection_id = caller.connection_id if caller.kind == CallerKind.CONNECTION else None
    return access(caller.environment_id, caller.principal.client_id, connection_id,
                  rule.scopes[0], ids, changed)


def note_access(request: Request, session: AsyncSession, caller: Caller,
                employee_ids: Iterable[uuid.UUID], *, changed: bool = True) -> None:
    """Log the call's access to these employees' data once the request commits
    (`changed` False: a write that changed nothing, logged as a read)."""
    if not logging_on(request):
        return
    access = access_of(caller, employee_ids, changed)
    if access is not None:
        unit_of_work(session).note_access(access)
