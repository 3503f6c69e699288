"""An employee's data-access log as CSV (Accept: text/csv), with the overview's cell rules
(services/registry/overview/cells.py: no formula injection)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from services.registry.data_access.schemas import AccessEntry
from services.registry.overview.cells import LINE_END, safe
from services.registry.overview.csv_export import iso

COLUMNS = ["day", "app_client_id", "app_name", "first_party", "connection_id", "scope",
           "action", "count", "first_at", "last_at"]


def line(entry: AccessEntry) -> str:
    return ",".join((
        entry.day.isoformat(), safe(entry.app.client_id), safe(entry.app.name),
        "true" if entry.first_party else "false",
        str(entry.connection_id) if entry.connection_id else "", entry.scope,
        entry.action.value, str(entry.count), iso(entry.first_at), iso(entry.last_at),
    )) + LINE_END


async def csv_stream(batches: AsyncIterator[list[AccessEntry]]) -> AsyncIterator[str]:
    yield ",".join(COLUMNS) + LINE_END
    async for batch in batches:
        yield "".join(line(entry) for entry in batch)
