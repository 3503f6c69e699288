"""Reading consent receipts (docs/product.md, "Consent receipts"): a connection's chain,
oldest first, for whoever may see the connection (the caller's visibility is checked by
the endpoint, through the connections' own rules); the partner gets the receipts signed
without the user's fields."""

from __future__ import annotations

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.receipts.repository import ReceiptRepository
from services.registry.receipts.schemas import ReceiptOut
from shared.errors import NotFound
from shared.pagination import (
    DEFAULT_LIMIT,
    InvalidParameter,
    check_limit,
    decode_cursor,
    encode_cursor,
)

CURSOR_KIND = "consent-receipts"


def _after(key: bytes, cursor: str | None) -> int:
    if cursor is None:
        return 0
    position = decode_cursor(key, CURSOR_KIND, cursor)
    if len(position) != 1 or not isinstance(position[0], int) or position[0] < 0:
        raise InvalidParameter("the cursor is not valid for this list", parameter="cursor")
    return position[0]


async def list_receipts(session: AsyncSession, key: bytes, connection_id: uuid.UUID,
                        cursor: str | None, limit: int = DEFAULT_LIMIT, *,
                        for_partner: bool = False) -> tuple[list[ReceiptOut], str | None]:
    """A page of the connection's receipts in chain order; the partner's JWS with
    `for_partner`."""
    check_limit(limit)
    rows = list(await ReceiptRepository(session).of_connection(
        connection_id, _after(key, cursor), limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    data = [ReceiptOut(id=r.id, act=r.act, issued_at=r.issued_at,
                       jws=r.partner_jws if for_partner else r.jws) for r in rows]
    return data, encode_cursor(key, CURSOR_KIND, [rows[-1].seq]) if more else None


async def wording_document(session: AsyncSession, sha256: str) -> str:
    """The stored wording document (canonical JSON) whose SHA-256 is `sha256`; 404."""
    row = await ReceiptRepository(session).wording(sha256)
    if row is None:
        raise NotFound("no scope wording has this SHA-256")
    return row.document
