"""Leave requests (`employee.leave`): who may file and decide them, and which status
changes are allowed. Every change writes `employee.leave.changed` in its transaction."""

from __future__ import annotations

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.resources import schemas
from services.sync.resources.access import Reach
from services.sync.resources.repository import ResourceRepository
from services.sync.resources.service import _child_common, _emit, employee
from shared.db.types import utcnow
from shared.errors import Conflict, Forbidden, NotFound
from shared.models import Employee, LeaveRequest
from shared.models import LeaveRequestStatus as Status

EVENT = "employee.leave.changed"
# Where a request may go from each status; a decision is final, an approval can still
# be cancelled.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.REQUESTED: frozenset({Status.APPROVED, Status.REJECTED, Status.CANCELLED}),
    Status.APPROVED: frozenset({Status.CANCELLED}),
    Status.REJECTED: frozenset(),
    Status.CANCELLED: frozenset(),
}
DECISIONS = frozenset({Status.APPROVED, Status.REJECTED})


async def _owned(session: AsyncSession, reach: Reach, employee_id: uuid.UUID,
                 request_id: uuid.UUID, *, for_update: bool) -> tuple[Employee, LeaveRequest]:
    owner = await employee(session, reach, employee_id, for_update=for_update)
    row = await ResourceRepository(session, reach).child(LeaveRequest, employee_id, request_id,
                                                         for_update=for_update)
    if row is None:
        raise NotFound("no such leave request")
    return owner, row


async def leave_request(session: AsyncSession, reach: Reach, employee_id: uuid.UUID,
                        request_id: uuid.UUID) -> LeaveRequest:
    """One leave request of an employee within reach (404 otherwise)."""
    return (await _owned(session, reach, employee_id, request_id, for_update=False))[1]


async def create(session: AsyncSession, reach: Reach, employee_id: uuid.UUID,
                 payload: schemas.LeaveRequestCreate) -> LeaveRequest:
    """File a request (status `requested`); one that shares a day with the employee's
    requested or approved leave answers 409."""
    owner = await employee(session, reach, employee_id, for_update=True)
    clash = await ResourceRepository(session, reach).overlapping_leave(
        owner.id, payload.start_date, payload.end_date)
    if clash is not None:
        raise Conflict(f"the employee already has {clash.status} leave from "
                       f"{clash.start_date.isoformat()} to {clash.end_date.isoformat()}",
                       field="start_date", leave_request_id=str(clash.id))
    fields = payload.model_dump(exclude_none=True)
    row = LeaveRequest(**_child_common(owner), **fields)
    session.add(row)
    await session.flush()
    _emit(session, EVENT, owner, leave_request_id=row.id, action="created",
          changed_fields=sorted({*fields, "status"}))
    await session.flush()
    return row


async def change_status(session: AsyncSession, reach: Reach, employee_id: uuid.UUID,
                        request_id: uuid.UUID, payload: schemas.LeaveRequestUpdate
                        ) -> LeaveRequest:
    """Approve, reject or cancel. The same status again changes nothing (no event); any
    other move the TRANSITIONS do not allow answers 409. An employee's own login may
    cancel its requests but not decide them."""
    target = payload.status
    if reach.employee_id is not None and target in DECISIONS:
        raise Forbidden("an employee's own login cannot approve or reject leave")
    owner, row = await _owned(session, reach, employee_id, request_id, for_update=True)
    if row.status == target:
        return row
    if target not in TRANSITIONS[Status(row.status)]:
        raise Conflict(f"a {row.status} leave request cannot become {target}",
                       field="status", current_status=str(row.status))
    row.status = target
    row.updated_at = utcnow()
    session.add(row)
    _emit(session, EVENT, owner, leave_request_id=row.id, action="status_changed",
          changed_fields=["status"])
    await session.flush()
    return row
