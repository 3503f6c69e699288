"""Directory queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.models import Company, User, UserCompany


class DirectoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def companies(self, company_ids: Sequence[uuid.UUID]) -> list[Company]:
        if not company_ids:
            return []
        stmt = select(Company).where(col(Company.id).in_(list(company_ids)))
        return list((await self.session.exec(stmt)).all())

    async def user_company_ids(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        stmt = select(UserCompany.company_id).where(UserCompany.user_id == user_id)
        return sorted((await self.session.exec(stmt)).all())

    async def set_user_companies(self, user_id: uuid.UUID, company_ids: Sequence[uuid.UUID]
                                 ) -> None:
        await self.session.exec(delete(UserCompany).where(col(UserCompany.user_id) == user_id))
        for company_id in sorted(set(company_ids)):
            self.session.add(UserCompany(user_id=user_id, company_id=company_id))
        await self.session.flush()

    async def users(self, environment_id: uuid.UUID, after: uuid.UUID | None, limit: int,
                    template: str | None, active: bool | None) -> list[User]:
        stmt = select(User).where(User.environment_id == environment_id)
        if after is not None:
            stmt = stmt.where(col(User.id) > after)
        if template is not None:
            stmt = stmt.where(User.template == template)
        if active is not None:
            stmt = stmt.where(col(User.active).is_(active))
        return list((await self.session.exec(stmt.order_by(col(User.id)).limit(limit))).all())

    async def email_taken(self, email: str) -> bool:
        stmt = select(User.id).where(User.email == email)
        return (await self.session.exec(stmt)).first() is not None
