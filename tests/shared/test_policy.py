"""The declared policy's own guarantees (shared/policy): no route escapes it, the table
says what docs/product.md section 3 says, and the consent rules are written once."""

from __future__ import annotations

import uuid

import pytest
from fastapi import APIRouter, Depends, FastAPI

from shared.models import App, AppState, Environment, User
from shared.policy import RULES, CallerKind
from shared.policy.approvals import (
    app_state,
    check_request_templates,
    may_consent_to,
    may_decide,
    may_request,
    request_templates,
    suspension_reason,
)
from shared.policy.consent import check_consent_templates, consent_templates
from shared.policy.dependency import OPERATION_KEY, annotate_operations, declare
from shared.policy.rules import REACH, Credential


def test_an_app_with_a_route_that_names_no_operation_is_refused() -> None:
    app = FastAPI()
    router = APIRouter()

    @router.get("/declared", dependencies=[Depends(declare("health"))])
    async def declared() -> dict:
        return {}

    @router.get("/forgotten")
    async def forgotten() -> dict:
        return {}

    app.include_router(router)
    with pytest.raises(RuntimeError, match="GET /forgotten"):
        annotate_operations(app)


def test_every_route_carries_its_operation_in_openapi() -> None:
    app = FastAPI()

    @app.get("/declared", dependencies=[Depends(declare("scopes.list"))])
    async def declared() -> dict:
        return {}

    annotate_operations(app)
    assert app.openapi()["paths"]["/declared"]["get"][OPERATION_KEY] == "scopes.list"


def test_an_undeclared_operation_cannot_be_named() -> None:
    with pytest.raises(KeyError):
        declare("payroll.everything")


def test_the_table_keeps_self_service_to_its_own_leave() -> None:
    """docs/product.md section 3: an employee reads, files and cancels leave; it never
    writes pay, employment, bank account or personal info, nor reads company figures."""
    employee = CallerKind.EMPLOYEE
    allowed = {op for op, rule in RULES.items() if rule.allows(employee)}
    writes = {op for op in allowed if not op.endswith((".list", ".read"))}
    assert writes == {"leave_requests.create", "leave_requests.update",
                      "me.connections.revoke"}
    assert RULES["leave_requests.update"].values[employee] == {"status": {"cancelled"}}
    for op in ("payroll_runs.list", "changes.list", "environment.connections.list"):
        assert not RULES[op].allows(employee)


def test_only_accountants_govern_the_environment_and_only_the_platform_makes_tenants() -> None:
    for op, rule in RULES.items():
        if op.startswith("environment."):
            assert rule.callers == {CallerKind.ACCOUNTANT}, op
    assert RULES["directory.environments.create"].callers == {CallerKind.PLATFORM_APP}
    assert all(rule.credential != Credential.ACCESS_TOKEN or rule.callers for rule in
               RULES.values())
    assert set(REACH) == set(CallerKind)


def test_an_environment_never_lets_accountants_or_employees_consent() -> None:
    assert check_consent_templates(["company", "master_client", "company"]) == [
        "company", "master_client"]
    for never in (["accountant"], ["employee", "company"]):
        with pytest.raises(ValueError, match="can never consent"):
            check_consent_templates(never)
    # A value stored before the rule existed is ignored, not obeyed.
    legacy = Environment(name="Old", consent_templates=["employee", "hr_manager"])
    assert consent_templates(legacy) == ["hr_manager"]
    assert consent_templates(None) == ["master_client", "company", "hr_manager",
                                       "payroll_hr_manager"]


def test_approval_requests_follow_the_declared_policy() -> None:
    """Who may request an app, who may decide a request, and when an approved connection
    still counts as allowed (shared/policy/approvals.py)."""
    for never in (["employee"], ["accountant"], ["company", "employee"]):
        with pytest.raises(ValueError, match="can never request"):
            check_request_templates(never)
    environment = Environment(name="E", consent_templates=["master_client"])
    assert request_templates(environment) == ["master_client"]  # the consent templates
    environment.approval_request_templates = ["hr_manager"]
    assert request_templates(environment) == ["hr_manager"]
    assert app_state(None, environment) == AppState.ALLOWED
    environment.default_app_state = "approval_required"
    assert app_state(None, environment) == AppState.APPROVAL_REQUIRED
    assert app_state("blocked", environment) == AppState.BLOCKED

    debtor, other = uuid.uuid4(), uuid.uuid4()
    hr = User(environment_id=environment.id, email="h@x", name="H", password_hash="",
              template="hr_manager", debtor_id=debtor)
    master = User(environment_id=environment.id, email="m@x", name="M", password_hash="",
                  template="master_client", debtor_id=debtor)
    assert not may_consent_to(hr, environment, AppState.ALLOWED)
    assert may_request(hr, environment, AppState.ALLOWED)
    assert not may_request(hr, environment, AppState.BLOCKED)
    assert may_consent_to(master, environment, AppState.ALLOWED)
    assert not may_consent_to(master, environment, AppState.APPROVAL_REQUIRED)
    assert not may_request(master, environment, AppState.APPROVAL_REQUIRED)  # not listed

    companies = {uuid.uuid4(), uuid.uuid4()}
    ask = {"requester_id": hr.id, "debtor_id": debtor, "company_ids": companies}
    assert may_decide(master, environment, **ask, reach=None)
    assert not may_decide(master, environment, **{**ask, "debtor_id": other}, reach=None)
    assert not may_decide(master, environment, **ask, reach={next(iter(companies))})
    assert not may_decide(hr, environment, **ask, reach=companies)  # may not consent
    assert not may_decide(master, environment, **{**ask, "requester_id": master.id},
                          reach=None)
    accountant = User(environment_id=environment.id, email="a@x", name="A",
                      password_hash="", template="accountant")
    assert may_decide(accountant, environment, **ask, reach=set())
    assert not may_decide(accountant, Environment(name="Other"), **ask, reach=set())

    app = App(client_id="c", name="App", redirect_uris=[], scopes=[])
    allowed = AppState.ALLOWED
    assert suspension_reason(hr, app, environment, allowed) == "user_may_not_consent"
    assert suspension_reason(hr, app, environment, allowed, approved=True) is None
    environment.approval_request_templates = ["company"]
    assert suspension_reason(hr, app, environment, allowed, approved=True) == \
        "user_may_not_consent"
    assert suspension_reason(master, app, environment, AppState.BLOCKED) == "app_blocked"
