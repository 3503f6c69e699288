"""The records of processing (GDPR article 30): for each app with a live connection in
the environment, the data categories it may receive (its consented scopes by
sensitivity), the debtors and the number of employees its connections cover, since when,
and the hosts its webhooks send to."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.processing.repository import ProcessingRepository
from services.registry.processing.schemas import (
    Category,
    ProcessingRecord,
    ProcessingRecords,
    RecordApp,
    RecordDebtor,
    RecordScope,
)
from shared.db.types import utcnow
from shared.scopes import SCOPES, Sensitivity

# Most sensitive first, as a register lists them. Scopes that carry no data
# (`offline_access`; sensitivity none) and any since dropped from the catalogue are not
# data categories.
ORDER = [Sensitivity.SPECIAL_CATEGORY, Sensitivity.SENSITIVE, Sensitivity.PERSONAL,
         Sensitivity.NORMAL]


def categories(scopes: set[str], lang: str) -> list[Category]:
    by_sensitivity: dict[Sensitivity, list[RecordScope]] = {}
    for name in sorted(scopes):
        known = SCOPES.get(name)
        if known is None or known.sensitivity == Sensitivity.NONE:
            continue
        title = known.localized(lang)["title"]
        by_sensitivity.setdefault(known.sensitivity, []).append(
            RecordScope(scope=name, title=title))
    return [Category(sensitivity=s, scopes=by_sensitivity[s]) for s in ORDER
            if s in by_sensitivity]


def hosts(urls: list[str]) -> list[str]:
    return sorted({urlsplit(url).hostname or "" for url in urls} - {""})


async def processing_records(session: AsyncSession, environment_id: uuid.UUID, lang: str
                             ) -> ProcessingRecords:
    now = utcnow()
    repo = ProcessingRepository(session, environment_id, now)
    totals = {row.app_id: row for row in await repo.totals()}
    ids = set(totals)
    if not ids:
        return ProcessingRecords(data=[], generated_at=now)
    scopes, debtors = await repo.scopes(), await repo.debtors()
    employees = await repo.employees()
    urls: dict[uuid.UUID, list[str]] = {}
    for app_id, url in await repo.webhook_urls(ids):
        urls.setdefault(app_id, []).append(url)
    records = [
        ProcessingRecord(
            app=RecordApp(client_id=app.client_id, name=app.name, publisher=app.publisher,
                          policy_uri=app.policy_uri),
            categories=categories(scopes.get(app.id, set()), lang),
            debtors=[RecordDebtor(id=d, name=n) for d, n in debtors.get(app.id, [])],
            employees=employees.get(app.id, 0), connections=totals[app.id].connections,
            since=totals[app.id].since, webhook_hosts=hosts(urls.get(app.id, [])))
        for app in await repo.apps(ids)]
    records.sort(key=lambda r: (r.app.name.lower(), r.app.client_id))
    return ProcessingRecords(data=records, generated_at=now)
