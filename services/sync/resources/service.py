"""The data API's rules: what a caller may read and change."""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.resources import schemas
from services.sync.resources.repository import ResourceRepository
from shared import payroll_changes
from shared.db.types import utcnow
from shared.errors import Conflict, Invalid, NotFound
from shared.models import Employee, Employment, WageComponent
from shared.outbox import emit
from shared.policy import Caller

NULLABLE = {"birth_date", "email"}


async def company(session: AsyncSession, reach: Caller, company_id: uuid.UUID):
    row = await ResourceRepository(session, reach).company(company_id)
    if row is None:
        raise NotFound("no such company")
    return row


async def employees(session: AsyncSession, reach: Caller, company_id: uuid.UUID,
                    after: uuid.UUID | None, limit: int) -> list[Employee]:
    await company(session, reach, company_id)
    return await ResourceRepository(session, reach).employees(company_id, after, limit)


async def employee(session: AsyncSession, reach: Caller, employee_id: uuid.UUID, *,
                   for_update: bool = False) -> Employee:
    row = await ResourceRepository(session, reach).employee(employee_id, for_update=for_update)
    if row is None:
        raise NotFound("no such employee")
    return row


def changed_fields(row: Any, changes: dict[str, Any]) -> list[str]:
    """The names of the personal fields `changes` gives other values than `row` has,
    sorted; 422 for a null in a field that needs a value."""
    for name, value in changes.items():
        if value is None and name not in NULLABLE:
            raise Invalid(f"{name} cannot be null", field=name)
    return sorted(name for name, value in changes.items() if getattr(row, name) != value)


async def update_employee(session: AsyncSession, reach: Caller, employee_id: uuid.UUID,
                          payload: schemas.EmployeeUpdate) -> tuple[Employee, list[str]]:
    """Apply the changed fields and write `employee.updated` in the same transaction."""
    row = await employee(session, reach, employee_id, for_update=True)
    changes = payload.model_dump(exclude_unset=True)
    changed = changed_fields(row, changes)
    if not changed:
        return row, []
    for name in changed:
        setattr(row, name, changes[name])
    row.updated_at = utcnow()
    session.add(row)
    emit(session, "employee.updated", row.environment_id,
         debtor_id=row.debtor_id, company_id=row.company_id, employee_id=row.id,
         changed_fields=changed)
    await session.flush()
    return row, changed


def _child_common(row: Employee) -> dict:
    return {"environment_id": row.environment_id, "debtor_id": row.debtor_id,
            "company_id": row.company_id, "employee_id": row.id}


def _emit(session: AsyncSession, type: str, employee: Employee, **data) -> None:
    """Write the thin event (ids and changed field names) in this transaction; the worker
    is nudged after the commit."""
    emit(session, type, employee.environment_id,
         debtor_id=employee.debtor_id, company_id=employee.company_id,
         employee_id=employee.id, **data)


async def create_employee(session: AsyncSession, reach: Caller, company_id: uuid.UUID,
                          payload: schemas.EmployeeCreate) -> Employee:
    """Add an employee to a company within reach and write `employee.created`."""
    row = await company(session, reach, company_id)
    repository = ResourceRepository(session, reach)
    if await repository.employee_number_taken(row.id, payload.number):
        raise Conflict("the company already has an employee with that number", field="number")
    return await payroll_changes.hire(session, row, payload.model_dump(exclude_none=True))


async def add_wage_component(session: AsyncSession, reach: Caller, employee_id: uuid.UUID,
                             payload: schemas.WageComponentCreate) -> WageComponent:
    """Add a wage component and write `employee.payment.changed`."""
    if payload.valid_to is not None and payload.valid_to < payload.valid_from:
        raise Invalid("valid_to is before valid_from", field="valid_to")
    owner = await employee(session, reach, employee_id, for_update=True)
    return await payroll_changes.add_wage_component(session, owner,
                                                    payload.model_dump(exclude_none=True))


async def _end(session: AsyncSession, reach: Caller, model, employee_id: uuid.UUID,
               row_id: uuid.UUID, start: str, end: str, value, event_type: str, id_name: str,
               what: str):
    owner = await employee(session, reach, employee_id, for_update=True)
    row = await ResourceRepository(session, reach).child(model, employee_id, row_id)
    if row is None:
        raise NotFound(f"no such {what}")
    if value < getattr(row, start):
        raise Invalid(f"{end} is before {start}", field=end)
    current = getattr(row, end)
    if current == value:
        return row, False  # already ended on that day: nothing changes, no event
    if current is not None and current < value:
        raise Conflict(f"the {what} already ended on {current.isoformat()}", field=end)
    setattr(row, end, value)
    row.updated_at = utcnow()
    session.add(row)
    _emit(session, event_type, owner, **{id_name: row.id}, action="ended",
          changed_fields=[end])
    await session.flush()
    return row, True


async def end_wage_component(session: AsyncSession, reach: Caller, employee_id: uuid.UUID,
                             component_id: uuid.UUID, payload: schemas.WageComponentEnd
                             ) -> tuple[WageComponent, bool]:
    """Set the last day of a wage component (earlier only, never later once ended); and
    whether it changed."""
    return await _end(session, reach, WageComponent, employee_id, component_id, "valid_from",
                      "valid_to", payload.valid_to, "employee.payment.changed",
                      "wage_component_id", "wage component")


async def end_employment(session: AsyncSession, reach: Caller, employee_id: uuid.UUID,
                         employment_id: uuid.UUID, payload: schemas.EmploymentEnd
                         ) -> tuple[Employment, bool]:
    """Set the last day of an employment and write `employee.employment.changed`; and
    whether it changed."""
    return await _end(session, reach, Employment, employee_id, employment_id, "start_date",
                      "end_date", payload.end_date, "employee.employment.changed",
                      "employment_id", "employment")
