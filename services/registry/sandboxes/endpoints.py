"""`/v1/sandboxes`: a partner's own sandbox environments (docs/product.md, "Sandboxes").

A partner calls with one of its apps' client-credentials tokens (`sandboxes.manage`) or
its initial access token; another partner's sandbox answers 404 like a missing one.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.deps import RuntimeDep, SessionDep, partner_can
from services.registry.sandboxes import removal, service, simulate
from services.registry.sandboxes.schemas import (
    SandboxCreated,
    SandboxIn,
    SandboxList,
    SandboxOut,
    SimulationIn,
    SimulationOut,
)
from shared.etag import Guarded, Versioned
from shared.models import Environment
from shared.policy.dependency import PartnerCaller
from shared.policy.sandboxes import MAX_PER_PARTNER

router = APIRouter(prefix="/v1/sandboxes", tags=["sandboxes"])
CanCreate = Annotated[PartnerCaller, partner_can("sandboxes.create")]
CanList = Annotated[PartnerCaller, partner_can("sandboxes.list")]
CanRead = Annotated[PartnerCaller, partner_can("sandboxes.read")]
CanDelete = Annotated[PartnerCaller, partner_can("sandboxes.delete")]
CanSimulate = Annotated[PartnerCaller, partner_can("sandboxes.simulate")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such sandbox"}}


@router.post("", response_model=SandboxCreated, status_code=201,
             responses={409: {"description": f"the partner has {MAX_PER_PARTNER} sandboxes"},
                        429: {"description": "too many sandboxes created this hour"}})
async def create_sandbox(body: SandboxIn, session: SessionDep, runtime: RuntimeDep,
                         caller: CanCreate) -> dict:
    """Create a sandbox: a synthetic environment with two debtors, four companies,
    employees with realistic Dutch payroll data and one login of every template (on a
    reserved email domain). The logins' passwords are in this answer only. At most
    five per partner, and `KOPPEL_SANDBOX_CREATIONS_PER_HOUR` (20) creations an hour."""
    await service.check_creation_rate(runtime, caller)
    return await service.create(session, caller, body.name)


@router.get("", response_model=SandboxList)
async def list_sandboxes(session: SessionDep, caller: CanList) -> dict:
    """The partner's own sandboxes, oldest first (without passwords)."""
    return {"data": await service.list_own(session, caller)}


async def _representation(session: AsyncSession, environment: Environment) -> SandboxOut:
    """The sandbox as its answers show it (what its ETag digests)."""
    return SandboxOut.model_validate(await service.describe(session, environment))


@router.get("/{sandbox_id}", response_model=SandboxOut, responses=NOT_FOUND)
async def get_sandbox(sandbox_id: uuid.UUID, session: SessionDep, caller: CanRead,
                      version: Versioned) -> SandboxOut:
    """One of the partner's sandboxes (without passwords), with an ETag."""
    environment = await service.owned(session, caller, sandbox_id)
    return version.tag(await _representation(session, environment))


@router.delete("/{sandbox_id}", status_code=204, responses=NOT_FOUND)
async def delete_sandbox(sandbox_id: uuid.UUID, session: SessionDep, caller: CanDelete,
                         version: Guarded) -> Response:
    """Delete the sandbox and everything in it, its connections and their tokens
    included (with `If-Match`: only if it is still as that ETag says)."""
    environment = await service.owned(session, caller, sandbox_id, for_update=True)
    if version.wanted:
        version.check(await _representation(session, environment), "sandbox")
    await removal.remove(session, environment, service.actor(caller))
    return Response(status_code=204)


@router.post("/{sandbox_id}/simulate", response_model=SimulationOut,
             responses={**NOT_FOUND, 409: {"description": "nothing left for this change"}})
async def simulate_change(sandbox_id: uuid.UUID, session: SessionDep, caller: CanSimulate,
                          body: SimulationIn | None = None) -> dict:
    """Make a realistic change in the sandbox (`new_hire`, `salary_change`,
    `payroll_run_finalized` or `absence`; a random one without a body), in the named
    company or any, written with its event like a change through the data API: webhooks
    go out and the change feed moves."""
    environment = await service.owned(session, caller, sandbox_id, for_update=True)
    body = body or SimulationIn()
    return await simulate.simulate(session, environment, body.kind, body.company_id)
