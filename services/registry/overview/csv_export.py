"""The overview as CSV, streamed batch by batch (any size, constant memory)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

from services.registry.overview.schemas import OverviewRow

COLUMNS = [
    "id", "app_client_id", "app_name", "publisher", "user_id", "user_email", "user_template",
    "user_deactivated", "debtor_id", "company_ids", "scopes", "sensitive_scopes", "status",
    "stale", "created_at", "last_used_at", "revoked_at",
]
# Cells a spreadsheet would run as a formula (CWE-1236) get a leading quote.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


def _line(writer, buffer: io.StringIO, cells: list[object]) -> str:
    writer.writerow([_cell(c) for c in cells])
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def row_cells(row: OverviewRow) -> list[object]:
    return [
        row.id, row.app.client_id, row.app.name, row.app.publisher, row.user.id,
        row.user.email, row.user.template.value, row.user_deactivated, row.debtor_id,
        row.company_ids, row.scopes, row.sensitive_scopes, row.status, row.stale,
        row.created_at, row.last_used_at, row.revoked_at,
    ]


async def csv_stream(batches: AsyncIterator[list[OverviewRow]]) -> AsyncIterator[str]:
    """The header, then one chunk per batch."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    yield _line(writer, buffer, list(COLUMNS))
    async for batch in batches:
        for row in batch:
            writer.writerow([_cell(c) for c in row_cells(row)])
        chunk = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        yield chunk
