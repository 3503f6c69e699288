"""Writes of payroll data that announce themselves: each change adds its row and, in the
same transaction, the catalogue's event (shared/outbox.py), so webhooks go out and the
change feed moves. The data API (sync) writes employees and wage components through
these functions after checking the caller's reach; a partner's sandbox simulator (the
registry) makes its realistic changes through the same ones."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db.types import utcnow
from shared.errors import Conflict
from shared.models import Absence, Company, Employee, PayrollRun, WageComponent
from shared.outbox import emit


def _owned_by(employee: Employee) -> dict[str, Any]:
    return {"environment_id": employee.environment_id, "debtor_id": employee.debtor_id,
            "company_id": employee.company_id, "employee_id": employee.id}


def _emit(session: AsyncSession, type: str, employee: Employee, **data: Any) -> None:
    """The thin event (ids and changed field names) of a change to the employee."""
    emit(session, type, employee.environment_id, debtor_id=employee.debtor_id,
         company_id=employee.company_id, employee_id=employee.id, **data)


async def hire(session: AsyncSession, company: Company, fields: dict[str, Any]) -> Employee:
    """Add an employee to the company and write `employee.created`; 409 when the number
    is taken (also by a concurrent hire)."""
    employee = Employee(environment_id=company.environment_id, debtor_id=company.debtor_id,
                        company_id=company.id, **fields)
    session.add(employee)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("the company already has an employee with that number",
                       field="number") from None
    _emit(session, "employee.created", employee, changed_fields=sorted(fields))
    await session.flush()
    return employee


async def add_wage_component(session: AsyncSession, employee: Employee,
                             fields: dict[str, Any]) -> WageComponent:
    """Add a wage component and write `employee.payment.changed` (added)."""
    row = WageComponent(**_owned_by(employee), **fields)
    session.add(row)
    await session.flush()
    _emit(session, "employee.payment.changed", employee, wage_component_id=row.id,
          action="added", changed_fields=sorted(fields))
    await session.flush()
    return row


async def end_wage_component(session: AsyncSession, employee: Employee, row: WageComponent,
                             valid_to: date) -> WageComponent:
    """Set a wage component's last day and write `employee.payment.changed` (ended)."""
    row.valid_to = valid_to
    row.updated_at = utcnow()
    session.add(row)
    _emit(session, "employee.payment.changed", employee, wage_component_id=row.id,
          action="ended", changed_fields=["valid_to"])
    await session.flush()
    return row


async def report_absence(session: AsyncSession, employee: Employee, fields: dict[str, Any]
                         ) -> Absence:
    """A sickness report: the absence and `employee.absence.changed`."""
    row = Absence(**_owned_by(employee), **fields)
    session.add(row)
    await session.flush()
    _emit(session, "employee.absence.changed", employee, absence_id=row.id,
          changed_fields=sorted(fields))
    await session.flush()
    return row


async def finalize_payroll_run(session: AsyncSession, company: Company, fields: dict[str, Any]
                               ) -> PayrollRun:
    """A finalized payroll run of the company and `payroll.run.finalized`."""
    row = PayrollRun(environment_id=company.environment_id, debtor_id=company.debtor_id,
                     company_id=company.id, status="finalized", finalized_at=utcnow(), **fields)
    session.add(row)
    await session.flush()
    emit(session, "payroll.run.finalized", company.environment_id, debtor_id=company.debtor_id,
         company_id=company.id, payroll_run_id=row.id)
    await session.flush()
    return row
