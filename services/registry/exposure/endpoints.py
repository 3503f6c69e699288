"""Who can read me (docs/product.md 5.5b): the connections whose reach covers one
employee, for the environment's accountant and for the employee themself."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from services.registry.deps import Cursor, LanguageDep, Limit, RuntimeDep, SessionDep, user_can
from services.registry.exposure import service
from services.registry.exposure.schemas import ExposureList, ExposureStatus
from shared.pagination import DEFAULT_LIMIT, page
from shared.policy.dependency import UserCaller

router = APIRouter(tags=["exposure"])
EmployeeExposure = Annotated[UserCaller, user_can("environment.employees.exposure.list")]
MyExposure = Annotated[UserCaller, user_can("me.exposure.list")]
Status = Annotated[ExposureStatus, Query(
    description="active (default: live connections, whose tokens read now), suspended, "
    "expired, revoked, or all")]


@router.get("/v1/environment/employees/{employee_id}/exposure", response_model=ExposureList,
            responses={404: {"description": "no such employee in the caller's environment"}})
async def employee_exposure(
    request: Request, response: Response, session: SessionDep, runtime: RuntimeDep,
    caller: EmployeeExposure, lang: LanguageDep, employee_id: uuid.UUID,
    status: Status = ExposureStatus.ACTIVE, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Who can read this employee: every connection of the environment whose reach covers
    the employee (the data API's own rule), with its app, the consenting user, the
    consented scopes and their sensitivity, since when, its last use and its expiry;
    `status` picks other connections. In connection id order, cursor pages."""
    rows, next_cursor = await service.employee_exposure(
        session, runtime.keyring.digest_key, caller.user.environment_id, employee_id,
        status, cursor, limit, lang)
    return page(request, response, rows, next_cursor)


@router.get("/v1/me/exposure", response_model=ExposureList)
async def my_exposure(
    request: Request, response: Response, session: SessionDep, runtime: RuntimeDep,
    caller: MyExposure, lang: LanguageDep, status: Status = ExposureStatus.ACTIVE,
    cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Who can read me: the connections that cover the calling user's own employee
    record, as `GET /v1/environment/employees/{employee_id}/exposure` shows them; an
    empty list for a login linked to no employee record."""
    rows, next_cursor = await service.own_exposure(
        session, runtime.keyring.digest_key, caller.user.environment_id,
        caller.user.employee_id, status, cursor, limit, lang)
    return page(request, response, rows, next_cursor)
