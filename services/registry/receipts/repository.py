"""The queries of consent receipts and scope wordings."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.models import ConsentReceipt, ScopeWording


class ReceiptRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def of_connection(self, connection_id: uuid.UUID, after_seq: int,
                            limit: int) -> Sequence[ConsentReceipt]:
        """The connection's receipts after `after_seq`, in chain order (oldest first)."""
        stmt = (select(ConsentReceipt)
                .where(ConsentReceipt.connection_id == connection_id,
                       col(ConsentReceipt.seq) > after_seq)
                .order_by(col(ConsentReceipt.seq)).limit(limit))
        return (await self.session.exec(stmt)).all()

    async def wording(self, sha256: str) -> ScopeWording | None:
        return await self.session.get(ScopeWording, sha256)
