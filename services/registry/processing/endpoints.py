"""The records of processing (docs/product.md): what an employer needs for its GDPR
article 30 register, per app, for the environment's accountant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.registry.deps import CSV, LanguageDep, SessionDep, user_can, wants_csv
from services.registry.processing import service
from services.registry.processing.csv_export import document
from services.registry.processing.schemas import ProcessingRecords
from shared.policy.dependency import UserCaller

router = APIRouter(tags=["processing-records"])
ListRecords = Annotated[UserCaller, user_can("environment.processing_records.list")]


@router.get("/v1/environment/processing-records", response_model=ProcessingRecords,
            responses={200: {"content": {CSV: {}},
                             "description": "JSON, or CSV when asked with Accept"}})
async def processing_records(request: Request, session: SessionDep, caller: ListRecords,
                             lang: LanguageDep):
    """Per app with a live connection in the environment: the data categories it may
    receive (its consented scopes by sensitivity), the debtors and the number of
    employees its connections cover, since when, and the hosts of its active webhook
    endpoints; with `Accept: text/csv` the same as CSV, one line per app."""
    records = await service.processing_records(session, caller.user.environment_id, lang)
    if wants_csv(request):
        return Response(document(records), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="processing-records.csv"'})
    return records
