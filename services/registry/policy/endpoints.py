"""The environment's app policy, for accountant logins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from services.registry.deps import SessionDep, user_can
from services.registry.policy import service
from services.registry.policy.schemas import (
    AppDecisionIn,
    ApprovalsIn,
    ConsentLifetimeChange,
    ConsentLifetimeIn,
    ConsentTemplatesIn,
    PolicyChange,
    PolicyOut,
)
from shared.policy.dependency import UserCaller

router = APIRouter(prefix="/v1/environment/policy", tags=["environment policy"])
EnvironmentPolicyRead = Annotated[UserCaller, user_can("environment.policy.read")]
EnvironmentPolicyAppsDecide = Annotated[UserCaller, user_can("environment.policy.apps.decide")]
EnvironmentPolicyTemplatesSet = Annotated[UserCaller, user_can("environment.policy.templates.set")]
EnvironmentPolicyLifetimeSet = Annotated[UserCaller, user_can("environment.policy.lifetime.set")]
EnvironmentPolicyApprovalsSet = Annotated[UserCaller,
                                          user_can("environment.policy.approvals.set")]


@router.get("", response_model=PolicyOut)
async def get_policy(session: SessionDep, caller: EnvironmentPolicyRead) -> PolicyOut:
    """The templates that may consent, the consent lifetime and the apps allowed or
    blocked in the environment."""
    return await service.read(session, caller)


@router.put("/apps/{client_id}", response_model=PolicyChange,
            responses={404: {"description": "no such third-party app"}})
async def decide_app(body: AppDecisionIn, session: SessionDep, caller: EnvironmentPolicyAppsDecide,
                     client_id: str = Path(max_length=80)) -> PolicyChange:
    """Set an app's state in the environment: `blocked` (its connections here are
    suspended at once), `allowed` (they resume) or `approval_required` (existing
    connections stay; a new consent needs an approved consent request). `{"blocked":
    true|false}` still works."""
    assert body.state is not None  # the body's validator sets it
    counts = await service.decide_app(session, caller, client_id, body.state, body.reason)
    return PolicyChange(**counts)


@router.put("/consent-templates", response_model=PolicyChange)
async def set_consent_templates(body: ConsentTemplatesIn, session: SessionDep,
                                caller: EnvironmentPolicyTemplatesSet) -> PolicyChange:
    """Set the templates that may link third-party apps (null: the default); connections
    of users who no longer may are suspended, of users who may again resumed."""
    templates = None if body.consent_templates is None else [
        t.value for t in body.consent_templates]
    return PolicyChange(**await service.set_consent_templates(session, caller, templates))


@router.put("/approvals", response_model=PolicyChange)
async def set_approvals(body: ApprovalsIn, session: SessionDep,
                        caller: EnvironmentPolicyApprovalsSet) -> PolicyChange:
    """Set the state of apps without an entry of their own (`allowed` by default) and the
    templates that may request an app they may not consent to (null: the consent
    templates; never `employee` or `accountant`)."""
    templates = None if body.approval_request_templates is None else [
        t.value for t in body.approval_request_templates]
    return PolicyChange(**await service.set_approvals(session, caller, body.default_app_state,
                                                      templates))


@router.put("/consent-lifetime", response_model=ConsentLifetimeChange)
async def set_consent_lifetime(body: ConsentLifetimeIn, session: SessionDep,
                               caller: EnvironmentPolicyLifetimeSet) -> ConsentLifetimeChange:
    """Set how long a consent lasts (null: no expiry; 30 to 730 days), and shorter
    lifetimes by scope sensitivity (the shortest that applies wins). Live connections
    get a new `expires_at` from their consent or last renewal at once, never sooner than
    14 days from now; new consents get it from the moment they are given."""
    updated = await service.set_consent_lifetime(
        session, caller, body.consent_lifetime_days, body.consent_lifetime_days_by_sensitivity)
    return ConsentLifetimeChange(
        consent_lifetime_days=body.consent_lifetime_days,
        consent_lifetime_days_by_sensitivity=body.consent_lifetime_days_by_sensitivity or {},
        updated=updated)
