"""Realistic changes in a sandbox, so that a partner sees its webhooks and the change
feed move: a new hire, a salary change, a finalized payroll run, a sickness report.
Each goes through shared/payroll_changes.py, the writes the data API uses, so each
writes its catalogue event in the same transaction."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.sandboxes.schemas import ChangeKind
from shared import payroll_changes as changes
from shared.db.types import utcnow
from shared.demo import data
from shared.errors import Conflict, Invalid
from shared.models import (
    Absence,
    Company,
    Employee,
    Employment,
    Environment,
    PayrollRun,
    WageComponent,
)
from shared.policy.sandboxes import sandbox_domain

SALARY = "SAL"
RAISES_PERMILLE = (20, 25, 30, 40, 50)  # 2 to 5 percent


def _first_of_next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def _pick(rows: list[Any], what: str) -> Any:
    if not rows:
        raise Conflict(f"the sandbox has no {what} for this change")
    return rows[secrets.randbelow(len(rows))]


@dataclass(frozen=True)
class Where:
    """The sandbox a change happens in, and the company when the partner named one."""

    env: Environment
    company_id: uuid.UUID | None


async def _companies(session: AsyncSession, where: Where) -> list[Company]:
    stmt = select(Company).where(Company.environment_id == where.env.id)
    if where.company_id is not None:
        stmt = stmt.where(Company.id == where.company_id)
    return list((await session.exec(stmt.order_by(col(Company.number)))).all())


async def _employed(session: AsyncSession, where: Where) -> list[Employee]:
    """Employees with an employment that has not ended."""
    stmt = (select(Employee).join(Employment, col(Employment.employee_id) == col(Employee.id))
            .where(Employee.environment_id == where.env.id, col(Employment.end_date).is_(None)))
    if where.company_id is not None:
        stmt = stmt.where(Employee.company_id == where.company_id)
    return list((await session.exec(stmt.order_by(col(Employee.id)).distinct())).all())


async def _salary(session: AsyncSession, employee: Employee) -> WageComponent | None:
    return (await session.exec(select(WageComponent).where(
        WageComponent.employee_id == employee.id, WageComponent.code == SALARY,
        col(WageComponent.valid_to).is_(None)).order_by(col(WageComponent.valid_from).desc())
    )).first()


async def new_hire(session: AsyncSession, where: Where) -> dict[str, Any]:
    env = where.env
    company = _pick(await _companies(session, where), "company")
    numbers = (await session.exec(select(Employee.number).where(
        Employee.company_id == company.id))).all()
    index = max((int(n) for n in numbers if n.isdigit()), default=0)
    details = data.employee_details(sandbox_domain(env.id), company.number, index)
    employee = await changes.hire(session, company, {
        "number": data.employee_number(index), **details})
    start = _first_of_next_month(utcnow().date())
    job: dict[str, Any] = {k: v for k, v in data.employment_details(company.number, index).items()
                           if k in ("hours_per_week", "function", "department")}
    session.add(Employment(environment_id=env.id, debtor_id=company.debtor_id,
                           company_id=company.id, employee_id=employee.id, start_date=start,
                           **job))
    salary = data.wage_components(company.number, index)[0]
    component = await changes.add_wage_component(session, employee, {
        **salary, "valid_from": start})
    return {"description": f"{employee.first_name} {employee.last_name} joins "
                           f"{company.name} on {start.isoformat()}",
            "events": ["employee.created", "employee.payment.changed"],
            "ids": {"company_id": company.id, "employee_id": employee.id,
                    "wage_component_id": component.id}}


async def salary_change(session: AsyncSession, where: Where) -> dict[str, Any]:
    paid = [(e, s) for e in await _employed(session, where)
            if (s := await _salary(session, e)) is not None]
    employee, current = _pick(paid, "employee with a salary")
    start = _first_of_next_month(max(utcnow().date(), current.valid_from))
    await changes.end_wage_component(session, employee, current, start - timedelta(days=1))
    raised = current.amount_cents * (1000 + RAISES_PERMILLE[
        secrets.randbelow(len(RAISES_PERMILLE))]) // 1000
    component = await changes.add_wage_component(session, employee, {
        "code": SALARY, "description": current.description, "amount_cents": raised,
        "valid_from": start})
    return {"description": f"{employee.first_name} {employee.last_name}'s monthly salary "
                           f"goes from {current.amount_cents / 100:.2f} to "
                           f"{raised / 100:.2f} EUR on {start.isoformat()}",
            "events": ["employee.payment.changed", "employee.payment.changed"],
            "ids": {"employee_id": employee.id, "ended_wage_component_id": current.id,
                    "wage_component_id": component.id}}


async def payroll_run_finalized(session: AsyncSession, where: Where) -> dict[str, Any]:
    company = _pick(await _companies(session, where), "company")
    last = (await session.exec(select(PayrollRun.period).where(
        PayrollRun.company_id == company.id).order_by(col(PayrollRun.period).desc()))).first()
    year, month = map(int, (last or utcnow().strftime("%Y-%m")).split("-"))
    period = f"{year + month // 12}-{month % 12 + 1:02d}"
    salaries = [s.amount_cents for e in await _employed(session, Where(where.env, company.id))
                if e.company_id == company.id and (s := await _salary(session, e))]
    run = await changes.finalize_payroll_run(session, company, {
        "period": period, **{k: v for k, v in data.payroll_run(period, salaries).items()
                             if k not in ("period", "status")}})
    return {"description": f"the payroll run of {company.name} for {period} is finalized",
            "events": ["payroll.run.finalized"],
            "ids": {"company_id": company.id, "payroll_run_id": run.id}}


async def absence(session: AsyncSession, where: Where) -> dict[str, Any]:
    absent = set((await session.exec(select(Absence.employee_id).where(
        Absence.environment_id == where.env.id, col(Absence.end_date).is_(None)))).all())
    employee = _pick([e for e in await _employed(session, where) if e.id not in absent],
                     "employee who is not already absent")
    today = utcnow().date()
    row = await changes.report_absence(session, employee, {
        "start_date": today, "percentage": 100 if secrets.randbelow(3) else 50})
    return {"description": f"{employee.first_name} {employee.last_name} reports sick from "
                           f"{today.isoformat()} ({row.percentage}%)",
            "events": ["employee.absence.changed"],
            "ids": {"employee_id": employee.id, "absence_id": row.id}}


SIMULATIONS = {
    ChangeKind.NEW_HIRE: new_hire,
    ChangeKind.SALARY_CHANGE: salary_change,
    ChangeKind.PAYROLL_RUN_FINALIZED: payroll_run_finalized,
    ChangeKind.ABSENCE: absence,
}


async def simulate(session: AsyncSession, env: Environment, kind: ChangeKind | None,
                   company_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Make the change (a random kind when none is asked for), in the named company or
    any; 422 for a company that is not the sandbox's."""
    where = Where(env, company_id)
    if company_id is not None and not await _companies(session, where):
        raise Invalid("no such company in this sandbox", field="company_id")
    chosen = kind or list(ChangeKind)[secrets.randbelow(len(ChangeKind))]
    result = await SIMULATIONS[chosen](session, where)
    ids: dict[str, uuid.UUID] = result.pop("ids")
    return {"kind": chosen, **result, "ids": ids}
