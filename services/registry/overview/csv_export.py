"""The overview as CSV, streamed in chunks of about 64 KiB (any size, constant memory).

Batches come from services/registry/overview/service.py `export_batches`: on SQLite
plain tuples, formatted here (what repeats across rows, an app's cells, a scope list's
cells, is formatted once); on PostgreSQL the lines themselves, made by the database
(repository.py `export_text`, held to the same bytes by tests/services/registry/
test_csv_export_sql.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

from services.registry.connections import health
from services.registry.overview.cells import LINE_END, safe, scope_cells
from services.registry.overview.service import ExportBatch

COLUMNS = [
    "id", "app_client_id", "app_name", "publisher", "user_id", "user_email", "user_template",
    "user_deactivated", "debtor_id", "company_ids", "scopes", "sensitive_scopes", "status",
    "stale", "created_at", "last_used_at", "revoked_at", "expires_at", "flags",
]
CHUNK = 64 * 1024
MAX_CACHED_SCOPE_LISTS = 10_000


def iso(value: datetime | str | None) -> str:
    """A timestamp in UTC as ISO 8601 with +00:00, whatever zone the driver gave it in
    (a naive one, from SQLite, is UTC)."""
    if value is None:
        return ""
    if isinstance(value, str):  # PostgreSQL formats them (repository.iso_text)
        return value
    text = value.isoformat()
    if text.endswith("+00:00"):
        return text
    return (value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


class _Formatter:
    """Rows to CSV lines. Only free text can need quoting: ids, timestamps, flags,
    status and template never do, and the cells of apps and scope lists are made once
    per export, so a line is a plain join."""

    def __init__(self) -> None:
        self.app_cells: dict = {}
        self.scopes: dict[str | None, tuple[str, str]] = {}

    def _app(self, batch: ExportBatch, app_id) -> tuple[str, str, str]:
        cells = self.app_cells.get(app_id)
        if cells is None:
            client_id, name, publisher = batch.apps[app_id]
            cells = self.app_cells[app_id] = (safe(client_id), safe(name), safe(publisher))
        return cells

    def _scopes(self, scopes_json: str | None) -> tuple[str, str]:
        cells = self.scopes.get(scopes_json)
        if cells is None:
            if len(self.scopes) >= MAX_CACHED_SCOPE_LISTS:
                self.scopes.clear()
            cells = self.scopes[scopes_json] = scope_cells(scopes_json)
        return cells

    def lines(self, batch: ExportBatch) -> Iterator[str]:
        """One CSV line per row of the batch."""
        app_cells, scope_cells_of = self.app_cells, self.scopes
        app_flags, limit = batch.app_flags, batch.expiring_limit or datetime.now(UTC)
        for row in batch.rows:
            (ident, app_id, user_id, debtor_id, scopes_json, status, created, last_used,
             revoked, email, template, active, stale, expires, companies) = row
            company_ids = companies if isinstance(companies, str) else " ".join(
                map(str, companies))
            app = app_cells.get(app_id) or self._app(batch, app_id)
            scopes = scope_cells_of.get(scopes_json) or self._scopes(scopes_json)
            yield ",".join((
                str(ident), *app, str(user_id), safe(email), str(template),
                "false" if active else "true", str(debtor_id), company_ids, *scopes,
                str(status), "true" if stale else "false", iso(created), iso(last_used),
                iso(revoked), iso(expires),
                " ".join(health.flags(status, expires_at=expires, unused=bool(stale),
                                      user_active=bool(active),
                                      app_flags=app_flags.get(app_id, ()),
                                      expiring_limit=limit)),
            )) + LINE_END


async def csv_stream(batches: AsyncIterator[ExportBatch]) -> AsyncIterator[str]:
    """The header, then the rows in chunks of about 64 KiB."""
    formatter = _Formatter()
    parts, size = [",".join(COLUMNS) + LINE_END], 0
    async for batch in batches:
        for line in _texts(batch) if batch.text is not None else formatter.lines(batch):
            parts.append(line)
            size += len(line)
            if size >= CHUNK:
                yield "".join(parts)
                parts, size = [], 0
        del batch  # before the next batch is read: one batch in memory at once
    if parts:
        yield "".join(parts)


def _texts(batch: ExportBatch) -> Iterator[str]:
    """A batch of lines made by PostgreSQL, in pieces of at most CHUNK characters."""
    if batch.text is None:
        raise ValueError("the batch has no lines made by PostgreSQL")
    for text in batch.text.parts:
        for start in range(0, len(text), CHUNK):
            yield text[start:start + CHUNK]
