"""The declared policy: every operation of the registry and sync APIs, who may perform it,
the scope its token must carry, and for writes which values each caller may set.

This table is the one place that says who may do what. An endpoint names its operation
(`shared/policy/dependency.py`); the role matrix (tests/security/test_role_matrix.py)
walks every operation of the OpenAPI documents for every caller kind and checks that the
answers are what this table and the reach rules (`shared/policy/reach.py`) say.

Where docs/product.md is silent the rule is the least privilege that the product needs;
such choices are commented below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from shared.policy.callers import (
    APPS,
    DATA_READERS,
    DATA_WRITERS,
    STAFF,
    USERS,
    CallerKind,
    user_kind,
)
from shared.policy.consent import CONSENT_CAPABLE
from shared.scopes import DATA_SCOPES

K = CallerKind


class Credential(StrEnum):
    """What a request authenticates with."""

    ACCESS_TOKEN = "access_token"  # a bearer access token (RFC 9068)
    NONE = "none"  # public: probes, the scope catalogue
    INITIAL_ACCESS_TOKEN = "initial_access_token"  # a partner registering an app (RFC 7591)
    REGISTRATION_ACCESS_TOKEN = "registration_access_token"  # the app's own (RFC 7592)


class Reach(StrEnum):
    """How far a caller kind reaches (shared/policy/reach.py computes it)."""

    CONNECTION = "the connection's debtor and the companies it covers"
    ENVIRONMENT = "the whole environment"
    DEBTOR = "one debtor and all its companies"
    COMPANIES = "the user's companies in the user's debtor"
    OWN_RECORD = "the user's own employee record (and its company's and debtor's basic info)"
    OWN_APP = ("the app's own registration, connections and webhook endpoints, and its "
               "partner's sandboxes")
    PLATFORM = "every environment"


REACH: Mapping[CallerKind, Reach] = {
    K.CONNECTION: Reach.CONNECTION,
    K.ACCOUNTANT: Reach.ENVIRONMENT,
    K.MASTER_CLIENT: Reach.DEBTOR,
    K.COMPANY: Reach.COMPANIES,
    K.HR_MANAGER: Reach.COMPANIES,
    K.PAYROLL_HR_MANAGER: Reach.COMPANIES,
    K.EMPLOYEE: Reach.OWN_RECORD,
    K.PARTNER_APP: Reach.OWN_APP,
    K.FIRST_PARTY_APP: Reach.ENVIRONMENT,
    K.PLATFORM_APP: Reach.PLATFORM,
}


@dataclass(frozen=True)
class Rule:
    """One operation: who may perform it and with which token scope (any of `scopes`)."""

    operation: str
    callers: frozenset[CallerKind]
    scopes: tuple[str, ...] = ()
    credential: Credential = Credential.ACCESS_TOKEN
    # Another credential the operation also accepts instead of an access token.
    also: Credential | None = None
    # Per caller kind, the only values it may write into the named fields; a caller kind
    # not named here may write any valid value.
    values: Mapping[CallerKind, Mapping[str, frozenset[str]]] = field(default_factory=dict)

    def allows(self, kind: CallerKind) -> bool:
        return kind in self.callers


def _rule(operation: str, callers: frozenset[CallerKind], *scopes: str,
          values: Mapping[CallerKind, Mapping[str, frozenset[str]]] | None = None) -> Rule:
    return Rule(operation, frozenset(callers), tuple(scopes), values=values or {})


def _credential(operation: str, credential: Credential) -> Rule:
    return Rule(operation, frozenset(), credential=credential)


ACCOUNTANT = frozenset({K.ACCOUNTANT})
PARTNER = frozenset({K.PARTNER_APP})
PLATFORM = frozenset({K.PLATFORM_APP})
PROVISIONERS = frozenset({K.FIRST_PARTY_APP, K.PLATFORM_APP})
# The templates an environment may let consent (never an accountant or an employee).
CONSENTERS = frozenset(user_kind(t) for t in CONSENT_CAPABLE)
# Who decides consent requests: accountants, and the users who may consent.
DECIDERS = ACCOUNTANT | CONSENTERS
# A self-service employee may only cancel its own leave requests, never decide on them.
EMPLOYEE_CANCELS_ONLY = {K.EMPLOYEE: {"status": frozenset({"cancelled"})}}

_RULES = (
    # Public and other credentials.
    _credential("health", Credential.NONE),
    _credential("metrics", Credential.NONE),  # Prometheus; keep it off the public network
    _credential("scopes.list", Credential.NONE),
    _credential("event_types.list", Credential.NONE),
    # A consent receipt's scope wording, by its hash: public like the catalogue.
    _credential("scopes.wording.read", Credential.NONE),
    _credential("registration.create", Credential.INITIAL_ACCESS_TOKEN),
    _credential("registration.read", Credential.REGISTRATION_ACCESS_TOKEN),
    _credential("registration.update", Credential.REGISTRATION_ACCESS_TOKEN),
    _credential("registration.delete", Credential.REGISTRATION_ACCESS_TOKEN),
    # Manage apps: every user sees and revokes the connections they made (an employee
    # may not consent, so has none to show).
    _rule("me.connections.list", USERS, "connections.read"),
    _rule("me.connections.read", USERS, "connections.read"),
    _rule("me.connections.revoke", USERS, "connections.manage"),
    # Renewing an expiring or expired connection is a new consent by the user who gave
    # it: only templates that can ever consent (the service also asks the environment's
    # consent gate: the user must still be allowed to consent now).
    _rule("me.connections.renew", CONSENTERS, "connections.manage"),
    # Narrowing (dropping scopes) changes a consent like renewing it: only the templates
    # that can consent, never a self-service employee.
    _rule("me.connections.narrow", CONSENTERS, "connections.manage"),
    # Signed consent receipts (issue 16): whoever may see the connection reads its
    # chain; the partner's receipts leave the consenting user out.
    _rule("me.connections.receipts.list", USERS, "connections.read"),
    # The partner's view: a third-party app's own connections, never user emails.
    _rule("app.connections.list", PARTNER),
    _rule("app.connections.read", PARTNER),
    _rule("app.connections.revoke", PARTNER),
    _rule("app.connections.receipts.list", PARTNER),
    # Grant Management for OAuth 2.0: the same connections as grants, with the draft's
    # client-credentials scopes (an app's own grants only).
    _rule("grants.read", PARTNER, "grant_management_query"),
    _rule("grants.revoke", PARTNER, "grant_management_revoke"),
    # The environment overview, app policy and audit log: accountant logins only.
    _rule("environment.connections.list", ACCOUNTANT, "environment.connections.read"),
    _rule("environment.connections.summary", ACCOUNTANT, "environment.connections.read"),
    _rule("environment.connections.receipts.list", ACCOUNTANT,
          "environment.connections.read"),
    _rule("environment.connections.revoke", ACCOUNTANT, "environment.connections.manage"),
    _rule("environment.connections.narrow", ACCOUNTANT, "environment.connections.manage"),
    _rule("environment.connections.bulk_revoke", ACCOUNTANT, "environment.connections.manage"),
    _rule("environment.policy.read", ACCOUNTANT, "environment.connections.read"),
    _rule("environment.policy.apps.decide", ACCOUNTANT, "environment.connections.manage"),
    _rule("environment.policy.templates.set", ACCOUNTANT, "environment.connections.manage"),
    _rule("environment.policy.lifetime.set", ACCOUNTANT, "environment.connections.manage"),
    _rule("environment.policy.approvals.set", ACCOUNTANT, "environment.connections.manage"),
    # Access reviews: accountants make, follow and (accountant reviews) decide them;
    # consenting users decide the items of their own connections.
    _rule("environment.access_reviews.create", ACCOUNTANT, "environment.connections.manage"),
    _rule("environment.access_reviews.list", ACCOUNTANT, "environment.connections.read"),
    _rule("environment.access_reviews.read", ACCOUNTANT, "environment.connections.read"),
    _rule("environment.access_reviews.items.list", ACCOUNTANT,
          "environment.connections.read"),
    _rule("environment.access_reviews.items.decide", ACCOUNTANT,
          "environment.connections.manage"),
    _rule("me.access_reviews.list", CONSENTERS, "connections.read"),
    _rule("me.access_reviews.decide", CONSENTERS, "connections.manage"),
    # Who can read me (issue 16): the connections whose reach covers one employee, for
    # the environment's accountant, and for any login about its own employee record
    # (User.employee_id; a login linked to none gets an empty list).
    _rule("environment.employees.exposure.list", ACCOUNTANT, "environment.connections.read"),
    _rule("environment.processing_records.list", ACCOUNTANT, "environment.connections.read"),
    _rule("me.exposure.list", USERS, "connections.read"),
    # The data-access log (issue 16): which apps read or changed an employee's data, for
    # the environment's accountant, and for any login about its own employee record (a
    # login linked to none gets an empty list). Never a partner's.
    _rule("environment.employees.data_access.list", ACCOUNTANT,
          "environment.connections.read"),
    _rule("me.data_access.list", USERS, "connections.read"),
    # Approval requests (under /v1/environment, but not the accountants' alone):
    # accountants and the users who may consent decide them (a user only those of its
    # own debtor within its reach, never its own: shared/policy/approvals.py
    # `may_decide`, else 404); every template that can ever consent may have asked, so
    # sees its own.
    _rule("consent_requests.list", DECIDERS,
          "environment.connections.read", "connections.read"),
    _rule("consent_requests.approve", DECIDERS,
          "environment.connections.manage", "connections.manage"),
    _rule("consent_requests.deny", DECIDERS,
          "environment.connections.manage", "connections.manage"),
    _rule("me.consent_requests.list", CONSENTERS, "connections.read"),
    _rule("environment.audit.list", ACCOUNTANT, "environment.connections.read"),
    _rule("environment.audit.checkpoints.list", ACCOUNTANT, "environment.connections.read"),
    # Provisioning: a bound first-party app inside its environment; only the platform's
    # own backend makes new environments.
    _rule("directory.environments.create", PLATFORM, "directory.manage"),
    *(_rule(f"directory.{what}", PROVISIONERS, "directory.manage") for what in (
        "environments.read", "environments.update", "debtors.create", "debtors.read",
        "debtors.update", "companies.create", "companies.read", "companies.update",
        "users.create", "users.list", "users.read", "users.update")),
    # Payroll data. Reads: every user within their reach (an employee: its own record)
    # and connections. Writes of pay, employment, bank account and personal info: staff
    # and connections, never a self-service employee (it files and cancels its own leave).
    _rule("debtors.list", DATA_READERS, "company.info.read"),
    _rule("companies.list", DATA_READERS, "company.info.read"),
    _rule("companies.read", DATA_READERS, "company.info.read"),
    _rule("employees.list", DATA_READERS, "employee.info.read"),
    _rule("employees.read", DATA_READERS, "employee.info.read"),
    _rule("employees.create", DATA_WRITERS, "employee.info"),
    _rule("employees.update", DATA_WRITERS, "employee.info"),
    _rule("employments.list", DATA_READERS, "employee.employment.read"),
    _rule("employments.read", DATA_READERS, "employee.employment.read"),
    _rule("employments.end", DATA_WRITERS, "employee.employment"),
    _rule("bank_accounts.list", DATA_READERS, "employee.bankaccount.read"),
    _rule("bank_accounts.read", DATA_READERS, "employee.bankaccount.read"),
    _rule("bank_accounts.update", DATA_WRITERS, "employee.bankaccount"),
    _rule("wage_components.list", DATA_READERS, "employee.payment.read"),
    _rule("wage_components.read", DATA_READERS, "employee.payment.read"),
    _rule("wage_components.add", DATA_WRITERS, "employee.payment"),
    _rule("wage_components.end", DATA_WRITERS, "employee.payment"),
    _rule("leave_balances.list", DATA_READERS, "employee.leave.read"),
    _rule("absences.list", DATA_READERS, "employee.absence.read"),
    _rule("leave_requests.list", DATA_READERS, "employee.leave.read"),
    _rule("leave_requests.read", DATA_READERS, "employee.leave.read"),
    _rule("leave_requests.create", DATA_READERS, "employee.leave"),
    _rule("leave_requests.update", DATA_READERS, "employee.leave",
          values=EMPLOYEE_CANCELS_ONLY),
    # Company totals reveal colleagues' pay: never for self-service.
    _rule("payroll_runs.list", DATA_WRITERS, "payroll.run.read"),
    # The change feed shows company-wide events: not for self-service either.
    _rule("changes.list", DATA_WRITERS, *sorted(DATA_SCOPES)),
    # Sandboxes: a partner's own synthetic environments, managed with an app's
    # client-credentials token or (`also`) the partner's initial access token.
    *(Rule(f"sandboxes.{what}", PARTNER, ("sandboxes.manage",),
           also=Credential.INITIAL_ACCESS_TOKEN)
      for what in ("create", "list", "read", "delete", "simulate")),
    # Webhook endpoints: a partner app's own, with its client-credentials token.
    *(_rule(f"webhooks.{what}", PARTNER, "webhooks.manage") for what in (
        "create", "list", "read", "update", "delete", "disable", "enable", "rotate_secret",
        "deliveries.list", "redeliver", "test", "keys", "rotate_key", "recover")),
)

RULES: Mapping[str, Rule] = {rule.operation: rule for rule in _RULES}
if len(RULES) != len(_RULES):  # pragma: no cover - a typo in the table above
    raise RuntimeError("an operation is declared twice in shared/policy/rules.py")

# Every caller kind appears in the table (a kind that reaches nothing is a mistake).
assert {k for rule in _RULES for k in rule.callers} == set(CallerKind), "unused caller kind"
assert STAFF < USERS and not (APPS & USERS)
