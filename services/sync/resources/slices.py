"""Data slices beyond personal info (docs/product.md section 4): employments, bank accounts, wage
components, leave, absence and payroll runs. Each needs its own scope; the employee or
company must be within reach (else 404)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from services.sync.deps import RuntimeDep, SessionDep, allowed, can
from services.sync.ratelimits import rate_limit
from services.sync.resources import schemas, service
from services.sync.resources.access import note_access
from services.sync.resources.endpoints import listing
from services.sync.resources.leave_endpoints import router as leave_router
from services.sync.resources.repository import ResourceRepository
from shared.db.types import utcnow
from shared.errors import NotFound
from shared.etag import Guarded, Versioned
from shared.models import (
    Absence,
    BankAccount,
    Employment,
    LeaveBalance,
    PayrollRun,
    WageComponent,
)
from shared.outbox import emit
from shared.pagination import DEFAULT_LIMIT, LimitQuery, after_id
from shared.policy import RULES, Caller

router = APIRouter(prefix="/v1/employees/{employee_id}", tags=["data"],
                   dependencies=[Depends(rate_limit)])
EmploymentsList = Annotated[Caller, can("employments.list")]
BankAccountsList = Annotated[Caller, can("bank_accounts.list")]
BankAccountsUpdate = Annotated[Caller, can("bank_accounts.update")]
EmploymentsEnd = Annotated[Caller, can("employments.end")]
WageComponentsAdd = Annotated[Caller, can("wage_components.add")]
WageComponentsEnd = Annotated[Caller, can("wage_components.end")]
PayrollRunsList = Annotated[Caller, can("payroll_runs.list")]


async def _rows(session, reach: Caller, runtime, model, employee_id: uuid.UUID, kind: str,
                cursor: str | None, limit: int) -> list:
    await service.employee(session, reach, employee_id)
    return await ResourceRepository(session, reach).children(
        model, employee_id, after_id(runtime.keyring.digest_key, kind, cursor), limit + 1)


async def _child(session, reach: Caller, model, employee_id: uuid.UUID, row_id: uuid.UUID,
                 what: str, *, for_update: bool = False):
    """One row of the employee's slice (the employee locked first for a write); 404 if the
    employee is out of reach or the row is not theirs."""
    await service.employee(session, reach, employee_id, for_update=for_update)
    row = await ResourceRepository(session, reach).child(model, employee_id, row_id,
                                                         for_update=for_update)
    if row is None:
        raise NotFound(f"no such {what}")
    return row


async def _check(session, reach: Caller, version, model, schema, employee_id: uuid.UUID,
                 row_id: uuid.UUID, what: str) -> None:
    """412 unless `If-Match` names the row as it is now (with the employee locked, so the
    check and the write see the same row)."""
    if not version.wanted:
        return
    row = await _child(session, reach, model, employee_id, row_id, what, for_update=True)
    version.check(schema.model_validate(row, from_attributes=True), what)


@router.get("/employments", response_model=schemas.Page)
async def list_employments(employee_id: uuid.UUID, reach: EmploymentsList, session: SessionDep,
                           runtime: RuntimeDep, request: Request, response: Response,
                           limit: LimitQuery = DEFAULT_LIMIT, cursor: str | None = None):
    """The employee's employments (`employee.employment.read`)."""
    kind = f"employments:{employee_id}"
    rows = await _rows(session, reach, runtime, Employment, employee_id, kind, cursor, limit)
    note_access(request, session, reach, [employee_id])
    return listing(request, response, runtime, kind, rows, limit, schemas.EmploymentOut)


@router.get("/bank-accounts", response_model=schemas.Page)
async def list_bank_accounts(employee_id: uuid.UUID, reach: BankAccountsList, session: SessionDep,
                             runtime: RuntimeDep, request: Request, response: Response,
                             limit: LimitQuery = DEFAULT_LIMIT, cursor: str | None = None):
    """The employee's bank accounts (`employee.bankaccount.read`)."""
    kind = f"bank-accounts:{employee_id}"
    rows = await _rows(session, reach, runtime, BankAccount, employee_id, kind, cursor, limit)
    note_access(request, session, reach, [employee_id])
    return listing(request, response, runtime, kind, rows, limit, schemas.BankAccountOut)


@router.patch("/bank-accounts/{account_id}", response_model=schemas.BankAccountOut)
async def update_bank_account(employee_id: uuid.UUID, account_id: uuid.UUID,
                              payload: schemas.BankAccountUpdate, reach: BankAccountsUpdate,
                              session: SessionDep, request: Request, version: Guarded):
    """Change IBAN or account holder (`employee.bankaccount`); writes an
    `employee.bankaccount.changed` event naming the changed fields."""
    employee = await service.employee(session, reach, employee_id, for_update=True)
    row = await _child(session, reach, BankAccount, employee_id, account_id, "bank account")
    if version.wanted:
        version.check(schemas.BankAccountOut.model_validate(row, from_attributes=True),
                      "bank account")
    changes = {k: v for k, v in payload.model_dump(exclude_unset=True).items() if v is not None}
    changed = sorted(k for k, v in changes.items() if getattr(row, k) != v)
    if changed:
        for name in changed:
            setattr(row, name, changes[name])
        row.updated_at = utcnow()
        session.add(row)
        emit(session, "employee.bankaccount.changed", employee.environment_id,
             debtor_id=employee.debtor_id, company_id=employee.company_id,
             employee_id=employee.id, bank_account_id=row.id, changed_fields=changed)
        await session.flush()
    note_access(request, session, reach, [employee.id], changed=bool(changed))
    return version.tag(schemas.BankAccountOut.model_validate(row, from_attributes=True))


@router.post("/employments/{employment_id}/end", response_model=schemas.EmploymentOut)
async def end_employment(employee_id: uuid.UUID, employment_id: uuid.UUID,
                         payload: schemas.EmploymentEnd, reach: EmploymentsEnd,
                         session: SessionDep, request: Request, version: Guarded):
    """End an employment on `end_date` (`employee.employment`); writes an
    `employee.employment.changed` event. Ending again on the same day changes nothing;
    moving an end date later answers 409."""
    await _check(session, reach, version, Employment, schemas.EmploymentOut, employee_id,
                 employment_id, "employment")
    row, changed = await service.end_employment(session, reach, employee_id, employment_id,
                                                payload)
    note_access(request, session, reach, [employee_id], changed=changed)
    return version.tag(schemas.EmploymentOut.model_validate(row, from_attributes=True))


@router.post("/wage-components", response_model=schemas.WageComponentOut, status_code=201)
async def add_wage_component(employee_id: uuid.UUID, payload: schemas.WageComponentCreate,
                             reach: WageComponentsAdd, session: SessionDep, request: Request,
                             version: Versioned):
    """Add a salary or wage component (`employee.payment`); writes an
    `employee.payment.changed` event naming the fields that were set."""
    row = await service.add_wage_component(session, reach, employee_id, payload)
    note_access(request, session, reach, [employee_id])
    return version.tag(schemas.WageComponentOut.model_validate(row, from_attributes=True))


@router.post("/wage-components/{component_id}/end", response_model=schemas.WageComponentOut)
async def end_wage_component(employee_id: uuid.UUID, component_id: uuid.UUID,
                             payload: schemas.WageComponentEnd, reach: WageComponentsEnd,
                             session: SessionDep, request: Request, version: Guarded):
    """End a wage component on `valid_to` (`employee.payment`); writes an
    `employee.payment.changed` event. Ending again on the same day changes nothing;
    moving an end date later answers 409."""
    await _check(session, reach, version, WageComponent, schemas.WageComponentOut, employee_id,
                 component_id, "wage component")
    row, changed = await service.end_wage_component(session, reach, employee_id,
                                                    component_id, payload)
    note_access(request, session, reach, [employee_id], changed=changed)
    return version.tag(schemas.WageComponentOut.model_validate(row, from_attributes=True))


def _read_only(path: str, model, schema, operation: str, summary: str) -> None:
    """Register `GET /v1/employees/{employee_id}/<path>` for a read-only slice."""
    checked = Depends(allowed(operation))
    scope = RULES[operation].scopes[0]

    async def endpoint(employee_id: uuid.UUID, session: SessionDep, runtime: RuntimeDep,
                       request: Request, response: Response,
                       limit: LimitQuery = DEFAULT_LIMIT, cursor: str | None = None,
                       reach: Caller = checked):
        kind = f"{path}:{employee_id}"
        rows = await _rows(session, reach, runtime, model, employee_id, kind, cursor, limit)
        note_access(request, session, reach, [employee_id])
        return listing(request, response, runtime, kind, rows, limit, schema)

    endpoint.__name__ = f"list_{path.replace('-', '_')}"
    endpoint.__doc__ = f"{summary} (`{scope}`)."
    router.add_api_route(f"/{path}", endpoint, methods=["GET"], response_model=schemas.Page)


_read_only("wage-components", WageComponent, schemas.WageComponentOut, "wage_components.list",
           "The employee's salary and wage components")
_read_only("leave-balances", LeaveBalance, schemas.LeaveBalanceOut, "leave_balances.list",
           "The employee's leave balances")
_read_only("absences", Absence, schemas.AbsenceOut, "absences.list",
           "The employee's sickness absences")

def _single(path: str, param: str, model, schema, operation: str, what: str) -> None:
    """Register `GET /v1/employees/{employee_id}/<path>/{<param>}`: one row, with its ETag."""
    checked = Depends(allowed(operation))
    scope = RULES[operation].scopes[0]

    async def endpoint(employee_id: uuid.UUID, row_id: uuid.UUID, session: SessionDep,
                       request: Request, version: Versioned, reach: Caller = checked):
        row = await _child(session, reach, model, employee_id, row_id, what)
        note_access(request, session, reach, [employee_id])
        return version.tag(schema.model_validate(row, from_attributes=True))

    # The path parameter keeps the name the write routes give it (`account_id`, ...).
    endpoint.__annotations__["row_id"] = Annotated[uuid.UUID, Path(alias=param)]

    endpoint.__name__ = f"get_{what.replace(' ', '_')}"
    endpoint.__doc__ = f"One {what} of the employee (`{scope}`), with an ETag."
    router.add_api_route(f"/{path}/{{{param}}}", endpoint, methods=["GET"], response_model=schema)


_single("employments", "employment_id", Employment, schemas.EmploymentOut, "employments.read",
        "employment")
_single("bank-accounts", "account_id", BankAccount, schemas.BankAccountOut, "bank_accounts.read",
        "bank account")
_single("wage-components", "component_id", WageComponent, schemas.WageComponentOut,
        "wage_components.read", "wage component")


# Leave requests (read-write, with single resources) live in their own module.
router.include_router(leave_router)

company_router = APIRouter(prefix="/v1/companies/{company_id}", tags=["data"],
                           dependencies=[Depends(rate_limit)])


@company_router.get("/payroll-runs", response_model=schemas.Page)
async def list_payroll_runs(company_id: uuid.UUID, reach: PayrollRunsList, session: SessionDep,
                            runtime: RuntimeDep, request: Request, response: Response,
                            limit: LimitQuery = DEFAULT_LIMIT, cursor: str | None = None):
    """The company's payroll runs with payslip totals (`payroll.run.read`)."""
    await service.company(session, reach, company_id)
    kind = f"payroll-runs:{company_id}"
    rows = await ResourceRepository(session, reach).children(
        PayrollRun, company_id, after_id(runtime.keyring.digest_key, kind, cursor), limit + 1,
        parent="company_id")
    return listing(request, response, runtime, kind, rows, limit, schemas.PayrollRunOut)
