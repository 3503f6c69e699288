"""How the CSV export writes a free-text cell, in one place for the Python formatter
(csv_export.py) and for its SQL twin (repository.py, PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import re

from shared.scopes import SCOPES, SENSITIVE_LEVELS

# Cells a spreadsheet would run as a formula (CWE-1236) get a leading quote.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A cell holding one of these is quoted, as the csv module does with "\r\n" lines.
QUOTE_TRIGGERS = (",", '"', "\r", "\n")
LINE_END = "\r\n"
_SPECIAL = re.compile(r'[,"\r\n]')


def _quoted(text: str) -> str:
    """The cell as the csv module writes it (quoted when it holds `,`, `"` or a line
    break)."""
    if not _SPECIAL.search(text):
        return text
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=LINE_END).writerow([text])
    return buffer.getvalue()[:-len(LINE_END)]


def safe(text: str | None) -> str:
    """Free text as a CSV cell: empty for None, a leading quote if it would start a
    formula, CSV-quoted if need be."""
    if text is None:
        return ""
    return _quoted(f"'{text}" if text.startswith(FORMULA_START) else text)


def scope_cells(scopes_json: str | None) -> tuple[str, str]:
    """The scopes and the sensitive ones among them, each space-separated."""
    scopes = json.loads(scopes_json) if scopes_json else []
    sensitive = [s for s in scopes if s in SCOPES and SCOPES[s].sensitivity in SENSITIVE_LEVELS]
    return safe(" ".join(str(s) for s in scopes)), safe(" ".join(sensitive))


def export_app_cells(client_id: str, name: str, publisher: str | None) -> str:
    """An app's three cells (client_id, name, publisher), comma-separated."""
    return ",".join((safe(client_id), safe(name), safe(publisher)))


def export_scope_cells(scopes_json: str | None) -> str:
    """A scope list's two cells (scopes, sensitive scopes), comma-separated."""
    return ",".join(scope_cells(scopes_json))
