"""The data API's rules: what a caller may read and change."""

from __future__ import annotations

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.deps import note_nudge
from services.sync.resources import schemas
from services.sync.resources.access import Reach
from services.sync.resources.repository import ResourceRepository
from shared.db.types import utcnow
from shared.errors import Invalid, NotFound
from shared.models import Employee
from shared.outbox import emit

NULLABLE = {"birth_date", "email"}


async def company(session: AsyncSession, reach: Reach, company_id: uuid.UUID):
    row = await ResourceRepository(session, reach).company(company_id)
    if row is None:
        raise NotFound("no such company")
    return row


async def employees(session: AsyncSession, reach: Reach, company_id: uuid.UUID,
                    after: uuid.UUID | None, limit: int) -> list[Employee]:
    await company(session, reach, company_id)
    return await ResourceRepository(session, reach).employees(company_id, after, limit)


async def employee(session: AsyncSession, reach: Reach, employee_id: uuid.UUID, *,
                   for_update: bool = False) -> Employee:
    row = await ResourceRepository(session, reach).employee(employee_id, for_update=for_update)
    if row is None:
        raise NotFound("no such employee")
    return row


async def update_employee(session: AsyncSession, reach: Reach, employee_id: uuid.UUID,
                          payload: schemas.EmployeeUpdate) -> tuple[Employee, list[str]]:
    """Apply the changed fields and write `employee.updated` in the same transaction."""
    row = await employee(session, reach, employee_id, for_update=True)
    changes = payload.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None and name not in NULLABLE:
            raise Invalid(f"{name} cannot be null", field=name)
    changed = sorted(name for name, value in changes.items() if getattr(row, name) != value)
    if not changed:
        return row, []
    for name in changed:
        setattr(row, name, changes[name])
    row.updated_at = utcnow()
    session.add(row)
    emit(session, "employee.updated", row.environment_id,  # type: ignore[arg-type]
         debtor_id=row.debtor_id, company_id=row.company_id, employee_id=row.id,
         changed_fields=changed)
    await session.flush()
    note_nudge(session)
    return row, changed
