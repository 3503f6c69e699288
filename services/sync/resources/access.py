"""What a caller reaches (SPEC 5.8): a connection its debtor and companies; a user of a
first-party app what the user reaches (SPEC section 3). Ids outside it answer 404."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.deps import SessionDep
from shared.auth_deps import PrincipalDep
from shared.errors import Forbidden
from shared.models import (
    App,
    Company,
    Connection,
    ConnectionCompany,
    ConnectionStatus,
    Employee,
    User,
    UserCompany,
    UserTemplate,
)
from shared.scopes import grants
from shared.tokens import InvalidToken, Principal


@dataclass(frozen=True)
class Reach:
    """The caller and the data it may see. `None` means "all of the environment's" (for
    debtors) or "all of the reachable debtors'" (for companies)."""

    principal: Principal
    environment_id: uuid.UUID
    debtor_ids: frozenset[uuid.UUID] | None
    company_ids: frozenset[uuid.UUID] | None
    employee_id: uuid.UUID | None = None  # the self-service employee's own record only
    connection_id: uuid.UUID | None = None
    # A connection's granted scopes: a token never reaches beyond the current consent.
    granted: frozenset[str] | None = None

    def has_scope(self, scope: str) -> bool:
        if self.granted is not None and not grants(self.granted, scope):
            return False
        return self.principal.has_scope(scope)


async def _companies_of(session: AsyncSession, stmt) -> frozenset[uuid.UUID]:
    return frozenset((await session.exec(stmt)).all())


async def connection_reach(session: AsyncSession, principal: Principal) -> Reach:
    connection = await session.get(Connection, principal.connection_id)
    app = (await session.exec(select(App).where(App.client_id == principal.client_id))).first()
    if (connection is None or app is None or connection.app_id != app.id
            or connection.status != ConnectionStatus.ACTIVE
            or connection.environment_id != principal.environment_id
            or connection.debtor_id != principal.debtor_id):
        raise InvalidToken("the access token's connection is not active")
    companies = await _companies_of(session, select(ConnectionCompany.company_id).where(
        ConnectionCompany.connection_id == connection.id))
    return Reach(principal, connection.environment_id, frozenset({connection.debtor_id}),
                 companies, connection_id=connection.id, granted=frozenset(connection.scopes))


async def user_reach(session: AsyncSession, principal: Principal) -> Reach:
    user = await session.get(User, principal.user_id)
    if user is None or not user.active or user.environment_id != principal.environment_id:
        raise InvalidToken("the access token's user is unknown or inactive")
    env = user.environment_id
    if user.template == UserTemplate.ACCOUNTANT:
        return Reach(principal, env, None, None)
    debtors = frozenset({user.debtor_id}) if user.debtor_id else frozenset()
    if user.template == UserTemplate.MASTER_CLIENT:
        return Reach(principal, env, debtors, None)
    if user.template == UserTemplate.EMPLOYEE:
        employee = await session.get(Employee, user.employee_id) if user.employee_id else None
        if employee is None:
            return Reach(principal, env, frozenset(), frozenset(), employee_id=uuid.UUID(int=0))
        return Reach(principal, env, frozenset({employee.debtor_id}),
                     frozenset({employee.company_id}), employee_id=employee.id)
    companies = await _companies_of(session, select(UserCompany.company_id).join(
        Company, col(Company.id) == col(UserCompany.company_id)).where(
        UserCompany.user_id == user.id, col(Company.debtor_id).in_(debtors)))
    return Reach(principal, env, debtors, companies)


async def reach(session: SessionDep, principal: PrincipalDep) -> Reach:
    """The reach of the verified caller; app tokens reach no payroll data."""
    if principal.kind == "connection":
        return await connection_reach(session, principal)
    if principal.kind == "user":
        return await user_reach(session, principal)
    raise Forbidden("payroll data needs a user's or a connection's token, not an app token")


ReachDep = Annotated[Reach, Depends(reach)]
