"""The data-access log (docs/product.md 5.5d): which apps read or changed an employee's
data, which parts and when, for the employee themself and for the environment's
accountant. Partners never read it."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from services.registry.data_access import service
from services.registry.data_access.csv_export import csv_stream
from services.registry.data_access.schemas import AccessList, AccessQuery
from services.registry.deps import CSV, RuntimeDep, SessionDep, user_can, wants_csv
from shared.pagination import page
from shared.policy.dependency import UserCaller

router = APIRouter(tags=["data-access"])
EmployeeLog = Annotated[UserCaller, user_can("environment.employees.data_access.list")]
MyLog = Annotated[UserCaller, user_can("me.data_access.list")]
Filters = Annotated[AccessQuery, Query()]


@router.get(
    "/v1/environment/employees/{employee_id}/data-access", response_model=AccessList,
    responses={404: {"description": "no such employee in the caller's environment"},
               200: {"content": {CSV: {}}, "description": "JSON, or CSV when asked with Accept"}},
)
async def employee_data_access(
    request: Request, response: Response, session: SessionDep, runtime: RuntimeDep,
    caller: EmployeeLog, employee_id: uuid.UUID, query: Filters,
) -> Any:
    """Which apps read or changed this employee's data: per app, connection, scope (the
    slice of data), action and UTC day, how many calls and the first and last; a list
    call counts for every employee it returned. Third-party apps and, marked
    `first_party`, the SaaS's own; a call shows within a minute. Filter by `client_id`,
    `scope`, `action` and days (`from`, `to`); newest day first, cursor pages; with
    `Accept: text/csv` every matching entry as CSV."""
    environment_id = caller.user.environment_id
    key = runtime.keyring.digest_key
    rows, next_cursor = await service.employee_log(session, key, environment_id,
                                                   employee_id, query)
    if wants_csv(request):
        return StreamingResponse(
            csv_stream(service.log_batches(runtime.async_session, environment_id,
                                           employee_id, query)),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="data-access.csv"'})
    return page(request, response, rows, next_cursor)


@router.get("/v1/me/data-access", response_model=AccessList)
async def my_data_access(
    request: Request, response: Response, session: SessionDep, runtime: RuntimeDep,
    caller: MyLog, query: Filters,
) -> dict[str, Any]:
    """Which apps read or changed my data (the calling user's own employee record), which
    parts and when, as the accountant's view of the record shows it; an empty list for
    a login linked to no employee record."""
    rows, next_cursor = await service.own_log(
        session, runtime.keyring.digest_key, caller.user.environment_id,
        caller.user.employee_id, query)
    return page(request, response, rows, next_cursor)
