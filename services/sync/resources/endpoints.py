"""The data API (docs/product.md 5.9): debtors, companies and employees within the
caller's reach."""

from __future__ import annotations

import uuid
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel

from services.sync.deps import RuntimeDep, SessionDep, can, read_pool
from services.sync.ratelimits import rate_limit
from services.sync.resources import employee_read, schemas, service
from services.sync.resources.access import logging_on, note_access
from services.sync.resources.repository import ResourceRepository
from shared.auth_deps import PrincipalDep, get_usage_recorder, principal
from shared.direct_route import DirectRoute, Handler, served_directly
from shared.etag import ETAG_HEADER, Guarded, Versioned, etag_of_json, if_none_match_hits
from shared.pagination import DEFAULT_LIMIT, LimitQuery, after_id, id_cursor, page
from shared.policy import Caller
from shared.policy.dependency import declare
from shared.tokens import Principal

router = APIRouter(prefix="/v1", tags=["data"], dependencies=[Depends(rate_limit)],
                   route_class=DirectRoute)
# The busiest read asks the policy itself (employee_read.py), on its fast path.
READ_EMPLOYEE = declare("employees.read")
DebtorsList = Annotated[Caller, can("debtors.list")]
CompaniesList = Annotated[Caller, can("companies.list")]
CompaniesRead = Annotated[Caller, can("companies.read")]
EmployeesList = Annotated[Caller, can("employees.list")]
EmployeesCreate = Annotated[Caller, can("employees.create")]
EmployeesUpdate = Annotated[Caller, can("employees.update")]


def listing(request: Request, response: Response, runtime: RuntimeDep, kind: str, rows: list,
            limit: int, schema) -> dict:
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = id_cursor(runtime.keyring.digest_key, kind, rows[-1].id) if more else None
    data = [schema.model_validate(row, from_attributes=True) for row in rows]
    return page(request, response, data, cursor)


def single_body(body: dict, if_none_match: str | None, response: Response) -> Response:
    """A JSON document with its ETag (304 if `If-None-Match` matches), keeping the headers
    that dependencies set (rate limits); `Cache-Control: no-store` comes from the app's
    rule for callers with credentials (shared/cache_control.py)."""
    etag = etag_of_json(body)
    headers = {**response.headers, "ETag": etag}
    headers.pop("content-length", None)
    if if_none_match_hits(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


def single(row, if_none_match: str | None, response: Response,
           schema: type[BaseModel] = schemas.EmployeeOut) -> Response:
    """The row as `schema` with its ETag (304 if `If-None-Match` matches), keeping the
    headers that dependencies set (rate limits)."""
    body = jsonable_encoder(schema.model_validate(row, from_attributes=True))
    return single_body(body, if_none_match, response)


@router.get("/debtors", response_model=schemas.Page)
async def list_debtors(reach: DebtorsList, session: SessionDep, runtime: RuntimeDep,
                       request: Request, response: Response,
                       limit: LimitQuery = DEFAULT_LIMIT, cursor: str | None = None):
    """The debtors the token reaches (`company.info.read`)."""
    rows = await ResourceRepository(session, reach).debtors(
        after_id(runtime.keyring.digest_key, "debtors", cursor), limit + 1)
    return listing(request, response, runtime, "debtors", rows, limit, schemas.DebtorOut)


@router.get("/companies", response_model=schemas.Page)
async def list_companies(reach: CompaniesList, session: SessionDep, runtime: RuntimeDep,
                         request: Request, response: Response,
                         limit: LimitQuery = DEFAULT_LIMIT, cursor: str | None = None,
                         debtor_id: uuid.UUID | None = None):
    """The companies the token reaches (`company.info.read`), optionally of one debtor."""
    rows = await ResourceRepository(session, reach).companies(
        after_id(runtime.keyring.digest_key, "companies", cursor), limit + 1, debtor_id)
    return listing(request, response, runtime, "companies", rows, limit, schemas.CompanyOut)


@router.get("/companies/{company_id}", response_model=schemas.CompanyOut)
async def get_company(company_id: uuid.UUID, reach: CompaniesRead, session: SessionDep,
                      version: Versioned):
    """One company the token reaches, with an ETag."""
    return version.tag(schemas.CompanyOut.model_validate(
        await service.company(session, reach, company_id), from_attributes=True))


@router.get("/companies/{company_id}/employees", response_model=schemas.Page)
async def list_employees(company_id: uuid.UUID, reach: EmployeesList, session: SessionDep,
                         runtime: RuntimeDep, request: Request, response: Response,
                         limit: LimitQuery = DEFAULT_LIMIT, cursor: str | None = None):
    """The company's employees (`employee.info.read`)."""
    kind = f"employees:{company_id}"
    rows = await service.employees(session, reach, company_id,
                                   after_id(runtime.keyring.digest_key, kind, cursor), limit + 1)
    note_access(request, session, reach, (row.id for row in rows[:limit]))
    return listing(request, response, runtime, kind, rows, limit, schemas.EmployeeOut)


@router.post("/companies/{company_id}/employees", response_model=schemas.EmployeeOut,
             status_code=201, responses={409: {"description": "The number is taken"}})
async def create_employee(company_id: uuid.UUID, payload: schemas.EmployeeCreate,
                          reach: EmployeesCreate, session: SessionDep, request: Request,
                          response: Response, version: Versioned):
    """Add an employee to the company (`employee.info`); writes an `employee.created`
    event naming the fields that were set."""
    employee = await service.create_employee(session, reach, company_id, payload)
    note_access(request, session, reach, [employee.id])
    response.headers["Location"] = f"/v1/employees/{employee.id}"
    return version.tag(schemas.EmployeeOut.model_validate(employee, from_attributes=True))


async def _employee_answer(request: Request, response: Response, caller: Principal,
                           employee_id: uuid.UUID, if_none_match: str | None) -> Response:
    """The body of `get_employee`, on either path: the read (the declared policy, on the
    read pool) and its answer with an ETag."""
    body = await employee_read.readable_employee(request.app.state.runtime,
                                                 read_pool(request.app), caller, employee_id,
                                                 get_usage_recorder(request),
                                                 logging_on(request))
    return single_body(body, if_none_match, response)


async def _get_employee_directly(request: Request, standard: Handler) -> Response:
    """`get_employee` without dependency solving: its dependencies' work in their order
    (the caller, its rate limit; READ_EMPLOYEE only names the operation), then its body.
    An id that is not a UUID in canonical form goes to FastAPI (its 422)."""
    raw = request.path_params["employee_id"]
    try:
        employee_id = uuid.UUID(raw)
    except ValueError:
        return await standard(request)
    if str(employee_id) != raw.lower():
        return await standard(request)
    caller = await principal(request)
    response = Response()  # carries the rate-limit headers, as FastAPI's would
    await rate_limit(request, response, caller)
    return await _employee_answer(request, response, caller, employee_id,
                                  request.headers.get("if-none-match"))


@router.get("/employees/{employee_id}", response_model=schemas.EmployeeOut,
            responses={200: {"headers": ETAG_HEADER},
                       304: {"description": "Not modified (If-None-Match)"}})
@served_directly(_get_employee_directly, runs=(rate_limit, principal, READ_EMPLOYEE))
async def get_employee(employee_id: uuid.UUID, caller: PrincipalDep, request: Request,
                       response: Response, _: Annotated[None, Depends(READ_EMPLOYEE)],
                       if_none_match: Annotated[str | None, Header()] = None):
    """One employee (`employee.info.read`), with an ETag."""
    # Served by _get_employee_directly; FastAPI's way only for an id in another form.
    return await _employee_answer(request, response, caller, employee_id, if_none_match)


@router.patch("/employees/{employee_id}", response_model=schemas.EmployeeOut)
async def update_employee(employee_id: uuid.UUID, payload: schemas.EmployeeUpdate,
                          reach: EmployeesUpdate, session: SessionDep, request: Request,
                          response: Response, version: Guarded):
    """Change personal fields (`employee.info`); writes an `employee.updated` event naming
    the changed fields. With `If-Match`, only if the employee is unchanged since."""
    if version.wanted:
        current = await service.employee(session, reach, employee_id, for_update=True)
        version.check(schemas.EmployeeOut.model_validate(current, from_attributes=True),
                      "employee")
    employee, changed = await service.update_employee(session, reach, employee_id, payload)
    note_access(request, session, reach, [employee.id], changed=bool(changed))
    return single(employee, None, response)
