"""The provisioning API for the SaaS backend (first-party client credentials with
`directory.manage`).

A platform-wide app provisions every environment; an app bound to an environment reads
and changes that environment only (its debtors, companies and users): another
environment's objects answer 404, as if they did not exist (the caller's reach,
shared/policy/reach.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response, status
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.deps import RuntimeDep, SessionDep, app_can
from services.registry.directory import service
from services.registry.directory.repository import DirectoryRepository
from services.registry.directory.schemas import (
    CompanyIn,
    CompanyOut,
    CompanyPatch,
    DebtorIn,
    DebtorOut,
    DebtorPatch,
    EnvironmentIn,
    EnvironmentOut,
    EnvironmentPatch,
    ReconcileCounts,
    UserChanged,
    UserIn,
    UserList,
    UserOut,
    UserPatch,
)
from shared.audit import Actor
from shared.errors import NotFound
from shared.etag import Guarded, Version, Versioned
from shared.models import Company, Debtor, Environment, User, UserTemplate
from shared.pagination import DEFAULT_LIMIT, page
from shared.policy.dependency import AppCaller
from shared.policy.sandboxes import provisioner_reaches

router = APIRouter(prefix="/v1/directory", tags=["directory"])
CanEnvironmentsCreate = Annotated[AppCaller, app_can("directory.environments.create")]
CanEnvironmentsRead = Annotated[AppCaller, app_can("directory.environments.read")]
CanEnvironmentsUpdate = Annotated[AppCaller, app_can("directory.environments.update")]
CanDebtorsCreate = Annotated[AppCaller, app_can("directory.debtors.create")]
CanDebtorsUpdate = Annotated[AppCaller, app_can("directory.debtors.update")]
CanCompaniesCreate = Annotated[AppCaller, app_can("directory.companies.create")]
CanCompaniesUpdate = Annotated[AppCaller, app_can("directory.companies.update")]
CanUsersCreate = Annotated[AppCaller, app_can("directory.users.create")]
CanUsersRead = Annotated[AppCaller, app_can("directory.users.read")]
CanUsersUpdate = Annotated[AppCaller, app_can("directory.users.update")]
CanDebtorsRead = Annotated[AppCaller, app_can("directory.debtors.read")]
CanCompaniesRead = Annotated[AppCaller, app_can("directory.companies.read")]
CanUsersList = Annotated[AppCaller, app_can("directory.users.list")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such object"}}
CREATED = status.HTTP_201_CREATED


def _actor(caller: AppCaller) -> Actor:
    return Actor("app", caller.app.client_id)


Row = TypeVar("Row", Environment, Debtor, Company, User)


async def _in_reach(session: AsyncSession, caller: AppCaller, model: type[Row],
                   ident: uuid.UUID, *, for_update: bool = False) -> Row:
    """The row if the caller reaches its environment (a bound app: its own only; a
    partner's sandbox: never); else 404, like a missing row."""
    row = await service.get(session, model, ident, for_update=for_update)
    environment = row if isinstance(row, Environment) \
        else await session.get(Environment, row.environment_id)
    if environment is None or not caller.caller.reaches(environment.id) \
            or not provisioner_reaches(environment):
        raise NotFound(f"no such {model.__tablename__[:-1]}")
    return row


def _environment_out(environment: Environment) -> EnvironmentOut:
    return EnvironmentOut.model_validate(environment, from_attributes=True)


async def _user_out(session, user: User) -> dict:
    company_ids = await DirectoryRepository(session).user_company_ids(user.id)
    return {**UserOut.model_validate({**user.model_dump(), "company_ids": company_ids}
                                     ).model_dump()}


async def _representation(session: AsyncSession, row: Row) -> Any:
    """The row as its answers show it (what its ETag digests)."""
    if isinstance(row, Environment):
        return _environment_out(row)
    if isinstance(row, User):
        return await _user_out(session, row)
    schema = DebtorOut if isinstance(row, Debtor) else CompanyOut
    return schema.model_validate(row, from_attributes=True)


async def _tagged(session: AsyncSession, version: Version, row: Row) -> Row:
    version.tag(await _representation(session, row))
    return row


async def _unchanged(session: AsyncSession, caller: AppCaller, model: type[Row],
                     ident: uuid.UUID, version: Version) -> Row:
    """The row in reach, locked for the write; 412 unless `If-Match` names it as it is."""
    row = await _in_reach(session, caller, model, ident, for_update=True)
    if version.wanted:
        version.check(await _representation(session, row), model.__tablename__[:-1])
    return row


@router.post("/environments", response_model=EnvironmentOut, status_code=CREATED,
             responses={403: {"description": "the app is bound to one environment"}})
async def create_environment(body: EnvironmentIn, session: SessionDep,
                             caller: CanEnvironmentsCreate, version: Versioned
                             ) -> EnvironmentOut:
    """Create an environment (a tenant); `consent_templates` null means the default.
    Only a platform-wide app creates environments (the policy refuses a bound one)."""
    templates = [t.value for t in body.consent_templates] if body.consent_templates is not None \
        else None
    environment = await service.create_environment(session, _actor(caller), body.name, templates)
    return version.tag(_environment_out(environment))


@router.get("/environments/{environment_id}", response_model=EnvironmentOut,
            responses=NOT_FOUND)
async def get_environment(environment_id: uuid.UUID, session: SessionDep,
                          caller: CanEnvironmentsRead, version: Versioned) -> EnvironmentOut:
    """One environment, with an ETag."""
    environment = await _in_reach(session, caller, Environment, environment_id)
    return version.tag(_environment_out(environment))


@router.patch("/environments/{environment_id}", response_model=EnvironmentOut,
              responses=NOT_FOUND)
async def update_environment(environment_id: uuid.UUID, body: EnvironmentPatch,
                             session: SessionDep, caller: CanEnvironmentsUpdate,
                             version: Guarded) -> EnvironmentOut:
    """Rename an environment or change the templates that may consent (connections of
    users who no longer may are suspended; of users who may again, resumed)."""
    environment = await _unchanged(session, caller, Environment, environment_id, version)
    changes = body.model_dump(exclude_unset=True, mode="json")
    if changes.get("name") is None:
        changes.pop("name", None)
    await service.update_environment(session, _actor(caller), environment, changes)
    return version.tag(_environment_out(environment))


@router.post("/environments/{environment_id}/debtors", response_model=DebtorOut,
             status_code=CREATED, responses=NOT_FOUND)
async def create_debtor(environment_id: uuid.UUID, body: DebtorIn, session: SessionDep,
                        caller: CanDebtorsCreate, version: Versioned) -> Debtor:
    """Add a debtor to an environment."""
    environment = await _in_reach(session, caller, Environment, environment_id)
    debtor = await service.create_debtor(session, _actor(caller), environment, body.model_dump())
    return await _tagged(session, version, debtor)


@router.patch("/debtors/{debtor_id}", response_model=DebtorOut, responses=NOT_FOUND)
async def update_debtor(debtor_id: uuid.UUID, body: DebtorPatch, session: SessionDep,
                        caller: CanDebtorsUpdate, version: Guarded) -> Debtor:
    """Change a debtor's name or number."""
    debtor = await _unchanged(session, caller, Debtor, debtor_id, version)
    await service.update_debtor(session, _actor(caller), debtor, body.model_dump(exclude_none=True))
    return await _tagged(session, version, debtor)


@router.post("/debtors/{debtor_id}/companies", response_model=CompanyOut, status_code=CREATED,
             responses=NOT_FOUND)
async def create_company(debtor_id: uuid.UUID, body: CompanyIn, session: SessionDep,
                         caller: CanCompaniesCreate, version: Versioned) -> Company:
    """Add a payroll company to a debtor."""
    debtor = await _in_reach(session, caller, Debtor, debtor_id)
    company = await service.create_company(session, _actor(caller), debtor, body.model_dump())
    return await _tagged(session, version, company)


@router.patch("/companies/{company_id}", response_model=CompanyOut, responses=NOT_FOUND)
async def update_company(company_id: uuid.UUID, body: CompanyPatch, session: SessionDep,
                         caller: CanCompaniesUpdate, version: Guarded) -> Company:
    """Change a company's details."""
    company = await _unchanged(session, caller, Company, company_id, version)
    await service.update_company(session, _actor(caller), company,
                                 body.model_dump(exclude_unset=True))
    return await _tagged(session, version, company)


@router.post("/environments/{environment_id}/users", response_model=UserOut,
             status_code=CREATED, responses={**NOT_FOUND, 409: {"description": "email taken"}})
async def create_user(environment_id: uuid.UUID, body: UserIn, session: SessionDep,
                      caller: CanUsersCreate, version: Versioned) -> dict:
    """Add a user (login) with a template, debtor and companies as the template needs."""
    environment = await _in_reach(session, caller, Environment, environment_id)
    user = await service.create_user(session, _actor(caller), environment, body)
    return version.tag(await _user_out(session, user))


@router.get("/users/{user_id}", response_model=UserOut, responses=NOT_FOUND)
async def get_user(user_id: uuid.UUID, session: SessionDep, caller: CanUsersRead,
                   version: Versioned) -> dict:
    """One user, with an ETag."""
    return version.tag(await _user_out(session, await _in_reach(session, caller, User, user_id)))


@router.patch("/users/{user_id}", response_model=UserChanged, responses=NOT_FOUND)
async def update_user(user_id: uuid.UUID, body: UserPatch, session: SessionDep,
                      caller: CanUsersUpdate, version: Guarded) -> dict:
    """Change a user. Deactivating them, or a template that may not consent, suspends
    their connections at once; undoing it resumes them. Revoked stays revoked. The ETag
    is the user's (without `connections`)."""
    user = await _unchanged(session, caller, User, user_id, version)
    counts = await service.update_user(session, _actor(caller), user, body)
    return {**version.tag(await _user_out(session, user)),
            "connections": ReconcileCounts(**counts)}


@router.get("/debtors/{debtor_id}", response_model=DebtorOut, responses=NOT_FOUND)
async def get_debtor(debtor_id: uuid.UUID, session: SessionDep, caller: CanDebtorsRead,
                     version: Versioned) -> Debtor:
    """One debtor, with an ETag."""
    return await _tagged(session, version, await _in_reach(session, caller, Debtor, debtor_id))


@router.get("/companies/{company_id}", response_model=CompanyOut, responses=NOT_FOUND)
async def get_company(company_id: uuid.UUID, session: SessionDep, caller: CanCompaniesRead,
                      version: Versioned) -> Company:
    """One company, with an ETag."""
    company = await _in_reach(session, caller, Company, company_id)
    return await _tagged(session, version, company)


@router.get("/environments/{environment_id}/users", response_model=UserList,
            responses=NOT_FOUND)
async def list_users(
    environment_id: uuid.UUID, request: Request, response: Response, session: SessionDep,
    runtime: RuntimeDep, caller: CanUsersList,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: int = DEFAULT_LIMIT, template: UserTemplate | None = None,
    active: bool | None = None,
) -> dict:
    """The environment's users in creation order, optionally by template or activity."""
    environment = await _in_reach(session, caller, Environment, environment_id)
    users, next_cursor = await service.list_users(
        session, runtime.keyring.digest_key, environment, cursor, limit, template, active)
    return page(request, response, [await _user_out(session, u) for u in users], next_cursor)
