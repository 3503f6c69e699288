"""The records of processing as CSV (Accept: text/csv): one line per app, with the
overview's cell rules (services/registry/overview/cells.py: no formula injection)."""

from __future__ import annotations

from services.registry.overview.cells import LINE_END, safe
from services.registry.overview.csv_export import iso
from services.registry.processing.schemas import ProcessingRecord, ProcessingRecords
from shared.scopes import Sensitivity

SENSITIVITIES = [s for s in Sensitivity if s != Sensitivity.NONE]
COLUMNS = ["app_client_id", "app_name", "publisher", "policy_uri",
           *(f"scopes_{s.value}" for s in SENSITIVITIES), "debtors", "employees",
           "connections", "since", "webhook_hosts"]


def line(record: ProcessingRecord) -> str:
    scopes = {c.sensitivity: " ".join(s.scope for s in c.scopes) for c in record.categories}
    return ",".join((
        safe(record.app.client_id), safe(record.app.name), safe(record.app.publisher),
        safe(record.app.policy_uri), *(scopes.get(s, "") for s in SENSITIVITIES),
        safe("; ".join(d.name for d in record.debtors)), str(record.employees),
        str(record.connections), iso(record.since), safe(" ".join(record.webhook_hosts)),
    )) + LINE_END


def document(records: ProcessingRecords) -> str:
    return ",".join(COLUMNS) + LINE_END + "".join(line(r) for r in records.data)
