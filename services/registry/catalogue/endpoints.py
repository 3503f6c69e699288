"""The public scope catalogue (docs/product.md section 4), from shared.scopes."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from services.registry.deps import LanguageDep
from shared.policy.dependency import declare
from shared.scopes import SCOPES, ScopeKind, implied

router = APIRouter(tags=["scope catalogue"])


class ScopeOut(BaseModel):
    scope: str
    title: str
    description: str
    sensitivity: str
    kind: str
    read_only: bool
    implies: list[str]
    events: list[str]


class ScopeList(BaseModel):
    data: list[ScopeOut]


@router.get("/v1/scopes", response_model=ScopeList, dependencies=[Depends(declare("scopes.list"))])
async def list_scopes(lang: LanguageDep) -> ScopeList:
    """Every scope a partner app can register or obtain: title and description (Dutch
    with `Accept-Language: nl`, else English), sensitivity and the events it unlocks.
    Public: no token needed."""
    data = [
        ScopeOut(**scope.localized(lang), kind=scope.kind.value, read_only=scope.read_only,
                 implies=sorted(implied([scope.name]) - {scope.name}),
                 events=list(scope.events))
        for scope in SCOPES.values() if scope.kind is not ScopeKind.FIRST_PARTY
    ]
    return ScopeList(data=data)
