"""Leave requests of an employee (docs/product.md section 4, `employee.leave`): list, one with its
ETag, file a request, approve / reject / cancel it. Mounted under
`/v1/employees/{employee_id}` by the slices router (which adds the rate limits)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from services.sync.deps import RuntimeDep, SessionDep, can
from services.sync.resources import leave_service, schemas, service
from services.sync.resources.access import note_access
from services.sync.resources.endpoints import listing, single
from services.sync.resources.repository import ResourceRepository
from shared.etag import ETAG_HEADER, Guarded, Versioned
from shared.models import LeaveRequest, LeaveRequestStatus
from shared.pagination import DEFAULT_LIMIT, LimitQuery, after_id
from shared.policy import Caller

router = APIRouter(prefix="/leave-requests")
LeaveRequestsList = Annotated[Caller, can("leave_requests.list")]
LeaveRequestsCreate = Annotated[Caller, can("leave_requests.create")]
LeaveRequestsRead = Annotated[Caller, can("leave_requests.read")]
LeaveRequestsUpdate = Annotated[Caller, can("leave_requests.update")]
# The single read sets its ETag itself (endpoints.single), and says so here.
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    200: {"headers": ETAG_HEADER},
    304: {"description": "Not modified (If-None-Match)"},
}


@router.get("", response_model=schemas.Page)
async def list_leave_requests(employee_id: uuid.UUID, reach: LeaveRequestsList, session: SessionDep,
                              runtime: RuntimeDep, request: Request, response: Response,
                              limit: LimitQuery = DEFAULT_LIMIT, cursor: str | None = None,
                              status: LeaveRequestStatus | None = None):
    """The employee's leave requests in the order they were filed, optionally of one
    status (`employee.leave.read`)."""
    await service.employee(session, reach, employee_id)
    kind = f"leave-requests:{employee_id}:{status or ''}"
    equal = {"status": status} if status is not None else {}
    rows = await ResourceRepository(session, reach).children(
        LeaveRequest, employee_id, after_id(runtime.keyring.digest_key, kind, cursor), limit + 1,
        **equal)
    note_access(request, session, reach, [employee_id])
    return listing(request, response, runtime, kind, rows, limit, schemas.LeaveRequestOut)


@router.post("", response_model=schemas.LeaveRequestOut, status_code=201,
             responses={409: {"description": "Overlaps the employee's requested or "
                                             "approved leave"}})
async def create_leave_request(employee_id: uuid.UUID, payload: schemas.LeaveRequestCreate,
                               reach: LeaveRequestsCreate, session: SessionDep,
                               request: Request, response: Response, version: Versioned):
    """File a leave request (`employee.leave`), status `requested`; writes an
    `employee.leave.changed` event naming the fields that were set."""
    row = await leave_service.create(session, reach, employee_id, payload)
    note_access(request, session, reach, [employee_id])
    response.headers["Location"] = f"/v1/employees/{employee_id}/leave-requests/{row.id}"
    return version.tag(schemas.LeaveRequestOut.model_validate(row, from_attributes=True))


@router.get("/{leave_request_id}", response_model=schemas.LeaveRequestOut,
            responses=NOT_MODIFIED)
async def get_leave_request(employee_id: uuid.UUID, leave_request_id: uuid.UUID,
                            reach: LeaveRequestsRead, session: SessionDep, request: Request,
                            response: Response,
                            if_none_match: Annotated[str | None, Header()] = None):
    """One leave request (`employee.leave.read`), with an ETag."""
    row = await leave_service.leave_request(session, reach, employee_id, leave_request_id)
    note_access(request, session, reach, [employee_id])
    return single(row, if_none_match, response, schemas.LeaveRequestOut)


@router.patch("/{leave_request_id}", response_model=schemas.LeaveRequestOut,
              responses={409: {"description": "The status cannot change that way, or the "
                                               "leave balance cannot cover an approval"}})
async def update_leave_request(employee_id: uuid.UUID, leave_request_id: uuid.UUID,
                               payload: schemas.LeaveRequestUpdate, reach: LeaveRequestsUpdate,
                               session: SessionDep, request: Request, response: Response,
                               version: Guarded):
    """Approve, reject or cancel a leave request (`employee.leave`): `requested` may
    become any of them, `approved` only `cancelled`; the rest is final (409). Approving
    takes the hours from the employee's balance of that type for the year the leave
    starts in (409 if it cannot cover them; a type without a balance is not counted);
    cancelling an approval gives them back. Writes `employee.leave.changed` events; the
    same status again changes nothing. With `If-Match`, only if the request is unchanged
    since."""
    if version.wanted:
        current = await leave_service.leave_request(session, reach, employee_id,
                                                    leave_request_id, for_update=True)
        version.check(schemas.LeaveRequestOut.model_validate(current, from_attributes=True),
                      "leave request")
    row, changed = await leave_service.change_status(session, reach, employee_id,
                                                     leave_request_id, payload)
    note_access(request, session, reach, [employee_id], changed=changed)
    return single(row, None, response, schemas.LeaveRequestOut)
