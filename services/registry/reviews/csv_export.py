"""A review's items as CSV (Accept: text/csv), with the overview's cell rules
(services/registry/overview/cells.py: no formula injection)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from services.registry.overview.cells import LINE_END, safe
from services.registry.overview.csv_export import iso
from services.registry.reviews.schemas import ItemOut

COLUMNS = ["id", "connection_id", "app_client_id", "app_name", "user_id", "user_email",
           "scopes", "connection_status", "decision", "reason", "decided_by", "decided_at"]


def line(item: ItemOut) -> str:
    return ",".join((
        str(item.id), str(item.connection_id), safe(item.app["client_id"]),
        safe(item.app["name"]), str(item.user["id"]), safe(item.user["email"]),
        " ".join(item.scopes), item.connection_status, item.decision or "",
        safe(item.reason), safe(item.decided_by), iso(item.decided_at),
    )) + LINE_END


async def csv_stream(batches: AsyncIterator[list[ItemOut]]) -> AsyncIterator[str]:
    yield ",".join(COLUMNS) + LINE_END
    async for batch in batches:
        yield "".join(line(item) for item in batch)
