"""The data API (docs/product.md 5.9): debtors, companies and employees within the
caller's reach."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sync.deps import (
    RuntimeDep,
    SessionDep,
    can,
    get_runtime,
    get_session,
    read_pool,
)
from services.sync.direct import (
    authorized_on,
    carried_headers,
    counted_caller,
    json_document,
)
from services.sync.ratelimits import rate_limit
from services.sync.resources import (
    employee_list,
    employee_read,
    employee_write,
    schemas,
    service,
)
from services.sync.resources.access import logging_on, note_access
from services.sync.resources.repository import ResourceRepository
from shared.auth_deps import PrincipalDep, get_usage_recorder, principal
from shared.direct_route import (
    DirectRoute,
    Handler,
    canonical_uuid,
    dependency_of,
    plain_int,
    served_directly,
)
from shared.etag import (
    ETAG_HEADER,
    Guarded,
    Version,
    Versioned,
    etag_of_json,
    guarded,
    if_none_match_hits,
)
from shared.idempotency import held_transaction
from shared.pagination import (
    DEFAULT_LIMIT,
    MAX_DATA_LIMIT,
    LimitQuery,
    after_id,
    id_cursor,
    page,
)
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
    etag = response.headers["ETag"] = etag_of_json(body)
    if if_none_match_hits(if_none_match, etag):
        return Response(status_code=304, headers=carried_headers(response))
    return json_document(body, response)


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


async def _employees_page(request: Request, response: Response, reach: Caller,
                          session: AsyncSession, company_id: uuid.UUID, limit: int,
                          cursor: str | None) -> dict:
    """The body of `list_employees`, on either path: a page of the company's employees
    (JSON values), the read noted in the data-access log."""
    kind = f"employees:{company_id}"
    key = request.app.state.runtime.keyring.digest_key
    rows = await service.employees(session, reach, company_id, after_id(key, kind, cursor),
                                   limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    note_access(request, session, reach, (row.id for row in rows))
    return page(request, response, [employee_read.employee_body(row) for row in rows],
                id_cursor(key, kind, rows[-1].id) if more else None)


async def _list_employees_directly(request: Request, standard: Handler) -> Response:
    """`list_employees` without dependency solving; a company id or limit in another
    form goes to FastAPI (its parsing and 422)."""
    company_id = canonical_uuid(request, "company_id")
    limit = plain_int(request, "limit", DEFAULT_LIMIT, 1, MAX_DATA_LIMIT)
    if company_id is None or limit is None:
        return await standard(request)
    response = Response()
    cursor = request.query_params.get("cursor")
    caller = await counted_caller(request, response)
    pool = read_pool(request.app)
    if caller.kind == "connection" and pool is not None:
        runtime = request.app.state.runtime
        data, more = await employee_list.connection_employees(
            runtime, pool, caller, company_id, cursor, limit, get_usage_recorder(request),
            logging_on(request))
        next_cursor = None if more is None else id_cursor(
            runtime.keyring.digest_key, f"employees:{company_id}", more)
        return json_document(page(request, response, data, next_cursor), response)
    async with authorized_on(request, caller, "employees.list") as (reach, session):
        body = await _employees_page(request, response, reach, session, company_id, limit,
                                     cursor)
    return json_document(body, response)


@router.get("/companies/{company_id}/employees", response_model=schemas.Page)
@served_directly(_list_employees_directly,
                 runs=(rate_limit, principal, dependency_of(EmployeesList), get_session,
                       get_runtime))
async def list_employees(company_id: uuid.UUID, reach: EmployeesList, session: SessionDep,
                         runtime: RuntimeDep, request: Request, response: Response,
                         limit: LimitQuery = DEFAULT_LIMIT, cursor: str | None = None):
    """The company's employees (`employee.info.read`)."""
    # Served by _list_employees_directly; FastAPI's way only for input in another form.
    return await _employees_page(request, response, reach, session, company_id, limit, cursor)


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
    employee_id = canonical_uuid(request, "employee_id")
    if employee_id is None:
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


async def _updated_employee(request: Request, response: Response, reach: Caller,
                            session: AsyncSession, employee_id: uuid.UUID,
                            payload: schemas.EmployeeUpdate, version: Version) -> Response:
    """The body of `update_employee`, on either path."""
    if version.wanted:
        current = await service.employee(session, reach, employee_id, for_update=True)
        version.check(employee_read.employee_body(current), "employee")
    employee, changed = await service.update_employee(session, reach, employee_id, payload)
    note_access(request, session, reach, [employee.id], changed=bool(changed))
    return single_body(employee_read.employee_body(employee), None, response)


def _json_payload(request: Request, body: bytes) -> schemas.EmployeeUpdate | None:
    """The request's JSON body as an `EmployeeUpdate` (parsed as FastAPI parses it), or
    None when it is not one: FastAPI then answers with its 422."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return None
    try:
        return schemas.EmployeeUpdate.model_validate(json.loads(body))
    except (ValueError, ValidationError):
        return None


async def _update_employee_directly(request: Request, standard: Handler) -> Response:
    """`update_employee` without dependency solving: the body and id are checked first
    (anything FastAPI would refuse goes to FastAPI, before any dependency ran), then the
    dependencies' work in their order and the body of the route. A connection's write on
    PostgreSQL takes the read's fast path (employee_write.py), unless the idempotency
    middleware holds the request's transaction."""
    employee_id = canonical_uuid(request, "employee_id")
    payload = _json_payload(request, await request.body())
    if employee_id is None or payload is None:
        return await standard(request)
    response = Response()
    caller = await counted_caller(request, response)
    if_match = request.headers.get("if-match")
    pool = read_pool(request.app)
    if caller.kind == "connection" and pool is not None and held_transaction(request) is None:
        body = await employee_write.update_connection_employee(
            request.app.state.runtime, pool, caller, employee_id,
            payload.model_dump(exclude_unset=True), if_match, get_usage_recorder(request),
            logging_on(request))
        return single_body(body, None, response)
    async with authorized_on(request, caller, "employees.update") as (reach, session):
        answer = await _updated_employee(request, response, reach, session, employee_id,
                                         payload, Version(response, if_match))
    return answer


@router.patch("/employees/{employee_id}", response_model=schemas.EmployeeOut)
@served_directly(_update_employee_directly,
                 runs=(rate_limit, principal, dependency_of(EmployeesUpdate), get_session,
                       get_runtime, guarded))
async def update_employee(employee_id: uuid.UUID, payload: schemas.EmployeeUpdate,
                          reach: EmployeesUpdate, session: SessionDep, request: Request,
                          response: Response, version: Guarded):
    """Change personal fields (`employee.info`); writes an `employee.updated` event naming
    the changed fields. With `If-Match`, only if the employee is unchanged since."""
    # Served by _update_employee_directly; FastAPI's way only for input it refuses.
    return await _updated_employee(request, response, reach, session, employee_id, payload,
                                   version)
