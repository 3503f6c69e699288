"""Leave requests (`employee.leave`): who may file and decide them, and which status
changes are allowed. Every change writes `employee.leave.changed` in its transaction.

Approving a request takes its hours from the employee's balance of that leave type for
the year the leave starts in, and cancelling an approved one gives them back, in the
same transaction. A type the employee has no balance row for (unpaid leave, say) is not
counted; an approval that a balance cannot cover answers 409 and changes nothing."""

from __future__ import annotations

import uuid

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.resources import schemas
from services.sync.resources.repository import ResourceRepository
from services.sync.resources.service import _child_common, _emit, employee
from shared.db.types import utcnow
from shared.errors import Conflict, NotFound
from shared.models import Employee, LeaveBalance, LeaveRequest
from shared.models import LeaveRequestStatus as Status
from shared.policy import Caller, refuse_values

EVENT = "employee.leave.changed"
# Where a request may go from each status; a decision is final, an approval can still
# be cancelled.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.REQUESTED: frozenset({Status.APPROVED, Status.REJECTED, Status.CANCELLED}),
    Status.APPROVED: frozenset({Status.CANCELLED}),
    Status.REJECTED: frozenset(),
    Status.CANCELLED: frozenset(),
}


async def _owned(session: AsyncSession, reach: Caller, employee_id: uuid.UUID,
                 request_id: uuid.UUID, *, for_update: bool) -> tuple[Employee, LeaveRequest]:
    owner = await employee(session, reach, employee_id, for_update=for_update)
    row = await ResourceRepository(session, reach).child(LeaveRequest, employee_id, request_id,
                                                         for_update=for_update)
    if row is None:
        raise NotFound("no such leave request")
    return owner, row


async def leave_request(session: AsyncSession, reach: Caller, employee_id: uuid.UUID,
                        request_id: uuid.UUID, *, for_update: bool = False) -> LeaveRequest:
    """One leave request of an employee within reach (404 otherwise); with `for_update`,
    the employee and the request locked for a write."""
    return (await _owned(session, reach, employee_id, request_id, for_update=for_update))[1]


async def create(session: AsyncSession, reach: Caller, employee_id: uuid.UUID,
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


async def _balance(session: AsyncSession, row: LeaveRequest) -> LeaveBalance | None:
    """The balance the request counts against, locked (None: its type is not counted)."""
    stmt = select(LeaveBalance).where(
        LeaveBalance.employee_id == row.employee_id,
        LeaveBalance.leave_type == str(row.leave_type),
        LeaveBalance.year == row.start_date.year,
    ).with_for_update()
    return (await session.exec(stmt)).first()


async def _settle_balance(session: AsyncSession, owner: Employee, row: LeaveRequest,
                          target: Status) -> None:
    """Take the hours on approval, give them back when an approval is cancelled."""
    if target == Status.APPROVED:
        change = -row.hours
    elif row.status == Status.APPROVED:
        change = row.hours
    else:
        return
    balance = await _balance(session, row)
    if balance is None:
        return
    if change < 0 and balance.balance_hours + change < 0:
        raise Conflict(f"the {row.leave_type} balance of {row.start_date.year} has "
                       f"{balance.balance_hours:g} hours; the request needs {row.hours:g}",
                       field="status", leave_balance_id=str(balance.id),
                       balance_hours=balance.balance_hours)
    balance.balance_hours += change
    balance.updated_at = utcnow()
    session.add(balance)
    _emit(session, EVENT, owner, leave_balance_id=balance.id, action="balance_changed",
          changed_fields=["balance_hours"])


async def change_status(session: AsyncSession, reach: Caller, employee_id: uuid.UUID,
                        request_id: uuid.UUID, payload: schemas.LeaveRequestUpdate
                        ) -> tuple[LeaveRequest, bool]:
    """Approve, reject or cancel (approving and cancelling an approval move the balance,
    see above), and whether it changed. The same status again changes nothing (no
    event); any other move the
    TRANSITIONS do not allow answers 409. Who may set which status is the policy's
    (an employee's own login may cancel its requests but not decide them)."""
    target = payload.status
    refuse_values(reach, {"status": target})
    owner, row = await _owned(session, reach, employee_id, request_id, for_update=True)
    if row.status == target:
        return row, False
    if target not in TRANSITIONS[Status(row.status)]:
        raise Conflict(f"a {row.status} leave request cannot become {target}",
                       field="status", current_status=str(row.status))
    await _settle_balance(session, owner, row, target)
    row.status = target
    row.updated_at = utcnow()
    session.add(row)
    _emit(session, EVENT, owner, leave_request_id=row.id, action="status_changed",
          changed_fields=["status"])
    await session.flush()
    return row, True
