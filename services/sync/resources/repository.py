"""Queries for the data API, each limited to the caller's reach (shared/policy/reach.py)."""

from __future__ import annotations

import uuid
from datetime import date

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.models import Company, Debtor, Employee, LeaveRequest, LeaveRequestStatus
from shared.policy import Caller, conditions

ACTIVE_LEAVE = (LeaveRequestStatus.REQUESTED, LeaveRequestStatus.APPROVED)


class ResourceRepository:
    def __init__(self, session: AsyncSession, reach: Caller) -> None:
        self.session, self.reach = session, reach

    def _scoped(self, stmt, model):
        return stmt.where(*conditions(self.reach, model))

    async def debtors(self, after: uuid.UUID | None, limit: int) -> list[Debtor]:
        stmt = self._scoped(select(Debtor), Debtor)
        if after is not None:
            stmt = stmt.where(col(Debtor.id) > after)
        return list((await self.session.exec(stmt.order_by(col(Debtor.id)).limit(limit))).all())

    async def companies(self, after: uuid.UUID | None, limit: int,
                        debtor_id: uuid.UUID | None = None) -> list[Company]:
        stmt = self._scoped(select(Company), Company)
        if debtor_id is not None:
            stmt = stmt.where(Company.debtor_id == debtor_id)
        if after is not None:
            stmt = stmt.where(col(Company.id) > after)
        return list((await self.session.exec(stmt.order_by(col(Company.id)).limit(limit))).all())

    async def company(self, company_id: uuid.UUID) -> Company | None:
        stmt = self._scoped(select(Company), Company).where(Company.id == company_id)
        return (await self.session.exec(stmt)).first()

    async def employees(self, company_id: uuid.UUID, after: uuid.UUID | None, limit: int
                        ) -> list[Employee]:
        stmt = self._scoped(select(Employee), Employee).where(Employee.company_id == company_id)
        if after is not None:
            stmt = stmt.where(col(Employee.id) > after)
        stmt = stmt.order_by(col(Employee.id)).limit(limit)
        return list((await self.session.exec(stmt)).all())

    async def employee(self, employee_id: uuid.UUID, *, for_update: bool = False
                       ) -> Employee | None:
        stmt = self._scoped(select(Employee), Employee).where(Employee.id == employee_id)
        if for_update and self.session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        return (await self.session.exec(stmt)).first()

    async def employee_number_taken(self, company_id: uuid.UUID, number: str) -> bool:
        stmt = select(Employee.id).where(Employee.company_id == company_id,
                                         Employee.number == number)
        return (await self.session.exec(stmt)).first() is not None

    async def children(self, model, employee_id: uuid.UUID, after: uuid.UUID | None,
                       limit: int, parent: str = "employee_id", **equal) -> list:
        """Rows of a data slice of one employee (or of one company: `parent`), optionally
        only those whose columns equal the `equal` values."""
        stmt = select(model).where(getattr(model, parent) == employee_id,
                                   model.environment_id == self.reach.environment_id,
                                   *(getattr(model, k) == v for k, v in equal.items()))
        if after is not None:
            stmt = stmt.where(col(model.id) > after)
        return list((await self.session.exec(stmt.order_by(col(model.id)).limit(limit))).all())

    async def child(self, model, employee_id: uuid.UUID, row_id: uuid.UUID, *,
                    for_update: bool = True):
        stmt = select(model).where(model.id == row_id, model.employee_id == employee_id,
                                   model.environment_id == self.reach.environment_id)
        if for_update and self.session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        return (await self.session.exec(stmt)).first()

    async def overlapping_leave(self, employee_id: uuid.UUID, start: date, end: date
                                ) -> LeaveRequest | None:
        """A requested or approved leave request of the employee that shares a day with
        `start`..`end`."""
        stmt = select(LeaveRequest).where(
            LeaveRequest.employee_id == employee_id,
            LeaveRequest.environment_id == self.reach.environment_id,
            col(LeaveRequest.status).in_(ACTIVE_LEAVE),
            col(LeaveRequest.start_date) <= end, col(LeaveRequest.end_date) >= start)
        return (await self.session.exec(stmt.order_by(col(LeaveRequest.id)).limit(1))).first()
