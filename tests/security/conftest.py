"""Two fully populated environments (A and B) for the security suites, every kind of
caller of environment A, and a cheap fingerprint of the whole database.

Everything is committed (the services read through their own sessions); the
`committing_sessions` fixture empties every table after each test.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from shared import audit
from shared.config import Settings
from shared.db.base import metadata
from shared.demo.seed import seed_environment
from shared.models import (
    Absence,
    AccessReview,
    AccessReviewItem,
    App,
    BankAccount,
    Company,
    ConsentRequest,
    ConsentRequestCompany,
    DataAccess,
    Debtor,
    Employee,
    Employment,
    Environment,
    Event,
    LeaveBalance,
    LeaveRequest,
    PayrollRun,
    User,
    WageComponent,
    WebhookDelivery,
    WebhookEndpoint,
    entry_id,
)
from shared.policy.sandboxes import sandbox_domain
from shared.scopes import DATA_SCOPES, FIRST_PARTY_SCOPES
from shared.signing import Signer
from shared.vault import KeyRing, SecretBox
from shared.vault.columns import WEBHOOK_SECRET
from shared.vault.tokens import token_digest
from tests.fixtures import factories as f
from tests.services.registry.conftest import Tenant, World, _tenant

DATA = sorted(DATA_SCOPES)
# A first-party user token with every first-party scope and every data scope.
ALL_USER_SCOPES = " ".join(sorted({*FIRST_PARTY_SCOPES, *DATA_SCOPES}))
# A partner app's client-credentials token with every app-level scope.
PARTNER_APP_SCOPES = ("webhooks.manage grant_management_query grant_management_revoke "
                      "sandboxes.manage")
USER_CALLERS = ("accountant", "master_client", "company", "hr_manager", "employee")
# Columns that a legitimate read may touch (usage bookkeeping), left out of fingerprints.
VOLATILE_COLUMNS = frozenset({"last_used_at", "last_seen_at", "used_at"})


@dataclass
class Side:
    """One environment's rows beyond the registry's Tenant: its own partner app and the
    objects the sync API serves."""

    tenant: Tenant
    app: App
    employees: list[Employee]
    slices: dict[str, list[Any]]
    endpoints: list[WebhookEndpoint]
    deliveries: list[WebhookDelivery]
    audit_ids: list[uuid.UUID]
    event_ids: list[uuid.UUID]
    # The side's partner's sandbox (its app's partner owns it) and the ids in it by kind.
    sandbox: Environment
    sandbox_rows: dict[str, list[uuid.UUID]]
    # Two access reviews of every connection: the consenting users' and the accountants'.
    reviews: list[AccessReview] = field(default_factory=list)
    review_items: list[AccessReviewItem] = field(default_factory=list)
    # Two pending consent requests (the HR manager's for two companies, the company
    # login's for one), and each one's companies.
    consent_requests: list[ConsentRequest] = field(default_factory=list)
    request_companies: dict[uuid.UUID, set[uuid.UUID]] = field(default_factory=dict)
    # Whether `ids` lists the sandbox's objects beside the environment's own (B: so that
    # every route is walked with a sandbox's ids too, and every list checked for them).
    lists_sandbox: bool = False

    def ids(self, kind: str) -> list[str]:
        """Every id of `kind` in this environment (as strings, for paths)."""
        t = self.tenant
        extra = self.sandbox_rows if self.lists_sandbox else {}
        rows: dict[str, list[Any]] = {
            "sandbox": [self.sandbox.id],
            "environment": [t.environment.id, *extra.get("environment", [])],
            "debtor": [*(d.id for d in t.debtors), *extra.get("debtor", [])],
            "company": [*(c.id for c in t.companies), *extra.get("company", [])],
            "user": [*(u.id for u in t.users.values()), *extra.get("user", [])],
            "connection": [c.id for c in t.connections],
            "employee": [*(e.id for e in self.employees), *extra.get("employee", [])],
            "endpoint": [e.id for e in self.endpoints],
            "delivery": [d.id for d in self.deliveries],
            "client": [self.app.client_id],
            "audit_event": self.audit_ids,
            "event": self.event_ids,
            "review": [r.id for r in self.reviews],
            "review_item": [i.id for i in self.review_items],
            "consent_request": [r.id for r in self.consent_requests],
            **{kind: [row.id for row in rows] for kind, rows in self.slices.items()},
        }
        return [str(x) for x in rows[kind]]

    def all_ids(self) -> set[str]:
        """Every identifier of this environment that must never show up elsewhere."""
        kinds = ["environment", "debtor", "company", "user", "connection", "employee",
                 "endpoint", "delivery", "client", "audit_event", "event", "sandbox",
                 "review", "review_item", "consent_request", *self.slices]
        sandboxed = {str(i) for rows in self.sandbox_rows.values() for i in rows}
        return {i for kind in kinds for i in self.ids(kind)} | {str(self.app.id)} | sandboxed


@dataclass
class Pair:
    """Environments A and B; `world` mints tokens (see tests/services/registry/conftest)."""

    world: World
    a: Side
    b: Side
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, caller: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[caller]}"} if caller != "none" else {}


def _common(employee: Employee) -> dict[str, Any]:
    return {"environment_id": employee.environment_id, "debtor_id": employee.debtor_id,
            "company_id": employee.company_id, "employee_id": employee.id}


def _side(session: Session, box: SecretBox, name: str) -> Side:
    app = f.make_app(session, name=f"{name} app", publisher=f"{name} B.V.",
                     scopes=[*DATA, "offline_access"],
                     grant_types=["authorization_code", "refresh_token", "client_credentials"])
    tenant = _tenant(session, [app])
    employees = [f.make_employee(session, c, email="e@example.test") for c in tenant.companies]
    slices: dict[str, list[Any]] = {k: [] for k in (
        "employment", "account", "component", "leave", "leave_request", "absence",
        "payroll_run")}
    for e in employees:
        rows = {
            "employment": Employment(**_common(e), start_date=date(2020, 1, 1)),
            "account": BankAccount(**_common(e), iban="NL91ABNA0417164300",
                                   account_holder="A. Jansen"),
            "component": WageComponent(**_common(e), code="BASE", description="Base",
                                       amount_cents=420000, valid_from=date(2026, 1, 1)),
            "leave": LeaveBalance(**_common(e), leave_type="statutory", year=2026,
                                  balance_hours=120.5),
            "leave_request": LeaveRequest(**_common(e), leave_type="statutory", hours=16.0,
                                          start_date=date(2026, 7, 1), end_date=date(2026, 7, 2)),
            "absence": Absence(**_common(e), start_date=date(2026, 3, 1), percentage=50),
        }
        for kind, row in rows.items():
            session.add(row)
            slices[kind].append(row)
    for c in tenant.companies:
        run = PayrollRun(environment_id=c.environment_id, debtor_id=c.debtor_id,
                         company_id=c.id, period="2026-10", status="finalized",
                         employee_count=1, gross_total_cents=500000, net_total_cents=350000)
        session.add(run)
        slices["payroll_run"].append(run)
    employee_user = tenant.users["employee"]
    employee_user.employee_id = employees[0].id
    session.add(employee_user)
    session.flush()
    _data_access(session, tenant, employees)

    events = [Event(type="employee.updated", environment_id=e.environment_id,
                    debtor_id=e.debtor_id, company_id=e.company_id,
                    data={"employee_id": str(e.id), "changed_fields": ["first_name"]})
              for e in employees]
    session.add_all(events)
    session.flush()
    endpoint = WebhookEndpoint(app_id=app.id, url="https://hooks.example.test/koppel",
                               events=["employee.updated"], secret_ciphertext=b"",
                               secret_key_id="")
    WEBHOOK_SECRET.seal(box, endpoint, b"whsec_" + b"A" * 44)
    session.add(endpoint)
    session.flush()
    deliveries = [WebhookDelivery(endpoint_id=endpoint.id, app_id=app.id, event_id=ev.id,
                                  type=ev.type, message_id=f"msg_{ev.id.hex}", status="failed",
                                  payload={"type": ev.type, "data": ev.data})
                  for ev in events]
    session.add_all(deliveries)
    audit_rows = [audit.append(session, tenant.environment.id, "connection.revoked",
                               audit.Actor("system"), "connection", c.id)
                  for c in tenant.connections]
    session.flush()
    sandbox, sandbox_rows = _sandbox(session, app)
    reviews, items = _reviews(session, tenant)
    requests = _consent_requests(session, tenant, app)
    return Side(tenant, app, employees, slices, [endpoint], deliveries,
                [r.id for r in audit_rows], [ev.id for ev in events], sandbox, sandbox_rows,
                reviews, items, [r for r, _ in requests], {r.id: c for r, c in requests})


def _data_access(session: Session, tenant: Tenant, employees: list[Employee]) -> None:
    """Entries of the data-access log: each connection of the tenant read each employee
    (the employee login's own record among them)."""
    day, at = date(2026, 12, 1), datetime(2026, 12, 1, 9, tzinfo=UTC)
    for connection in tenant.connections:
        client_id = session.get(App, connection.app_id).client_id  # type: ignore[union-attr]
        for e in employees:
            session.add(DataAccess(
                id=entry_id(e.environment_id, client_id, connection.id, e.id,
                            "employee.info.read", "read", day, False),
                environment_id=e.environment_id, employee_id=e.id, client_id=client_id,
                connection_id=connection.id, scope="employee.info.read", action="read",
                day=day, count=1, first_at=at, last_at=at))
    session.flush()


def _consent_requests(session: Session, tenant: Tenant, app: App
                      ) -> list[tuple[ConsentRequest, set[uuid.UUID]]]:
    """Pending requests for the app: the HR manager's (the first two companies) and the
    company login's (the first company)."""
    made = []
    for name, companies in (("hr_manager", tenant.companies[:2]),
                            ("company", tenant.companies[:1])):
        user = tenant.users[name]
        request = ConsentRequest(environment_id=tenant.environment.id, user_id=user.id,
                                 app_id=app.id, debtor_id=tenant.debtors[0].id,
                                 scopes=["company.info.read"], justification=f"{name} asks",
                                 expires_at=datetime(2099, 1, 1, tzinfo=UTC))
        session.add(request)
        session.flush()
        session.add_all([ConsentRequestCompany(request_id=request.id, company_id=c.id)
                         for c in companies])
        made.append((request, {c.id for c in companies}))
    session.flush()
    return made


def _reviews(session: Session, tenant: Tenant
             ) -> tuple[list[AccessReview], list[AccessReviewItem]]:
    """A consenting-user review and an accountant review, each of every connection."""
    reviews = [AccessReview(environment_id=tenant.environment.id, name=f"{who} review",
                            reviewer=who, default_decision="keep",
                            due_at=datetime(2099, 1, 1, tzinfo=UTC),
                            created_by=tenant.users["accountant"].id)
               for who in ("consenting_user", "accountant")]
    session.add_all(reviews)
    session.flush()
    items = [AccessReviewItem(review_id=r.id, environment_id=tenant.environment.id,
                              connection_id=c.id, user_id=c.user_id, app_id=c.app_id)
             for r in reviews for c in tenant.connections]
    session.add_all(items)
    session.flush()
    return reviews, items


def _sandbox(session: Session, app: App) -> tuple[Environment, dict[str, list[uuid.UUID]]]:
    """A sandbox of the app's partner, seeded as the registry seeds one (one employee per
    company; placeholder password hashes: nobody logs in here)."""
    sandbox = Environment(name=f"{app.name} sandbox", sandbox_partner_id=app.partner_id)
    session.add(sandbox)
    session.flush()
    seed_environment(session, sandbox, sandbox_domain(sandbox.id), 1,
                     logins=lambda: ("unused", "not-a-hash"))
    session.flush()
    rows: dict[str, list[uuid.UUID]] = {"environment": [sandbox.id]}
    for kind, model in (("debtor", Debtor), ("company", Company), ("user", User),
                        ("employee", Employee)):
        rows[kind] = list(session.exec(select(model.id).where(
            model.environment_id == sandbox.id)).scalars())
    return sandbox, rows


@pytest.fixture
def pair(committing_sessions: sessionmaker[Session], keyring: KeyRing, settings: Settings,
         redis_client: redis.Redis) -> Pair:
    """Environments A and B, each with two debtors, four companies with an employee and
    every data slice each, a user of every template, its own partner app (every data
    scope) with connections, a webhook endpoint with deliveries, events and audit events;
    and tokens for every kind of caller of environment A."""
    box = SecretBox(keyring)
    with committing_sessions() as session:
        a, b = _side(session, box, "Alpha"), _side(session, box, "Beta")
        b.lists_sandbox = True
        # Environment A's own frontend: its user tokens are A's callers.
        first_party = f.make_app(session, first_party=True, environment=a.tenant.environment,
                                 grant_types=["authorization_code", "refresh_token",
                                              "client_credentials"])
        session.commit()
    world = World(committing_sessions, Signer(box), settings, first_party, [a.app, b.app],
                  a.tenant, b.tenant)
    result = Pair(world, a, b)
    for name in USER_CALLERS:
        result.tokens[name] = world.user_token(a.tenant.users[name], ALL_USER_SCOPES)
    result.tokens["partner_app"] = world.app_token(a.app, PARTNER_APP_SCOPES)
    result.tokens["connection"] = world.connection_token(a.tenant.connections[0])
    # A's app's RFC 7592 registration access token (an opaque token, stored as a digest).
    registration = "reg-" + secrets.token_urlsafe(24)
    with committing_sessions() as session:
        row = session.get(App, a.app.id)
        row.registration_access_token_digest = token_digest(keyring.digest_key, registration)
        session.commit()
    result.tokens["registration"] = registration
    return result


CALLERS = (*USER_CALLERS, "partner_app", "connection", "registration")


def private(response: httpx.Response) -> bool:
    """Whether an answer forbids caches to keep it (SECURITY 39): `Cache-Control:
    no-store`, and `Vary: Authorization` so no cache keys it on the URL alone."""
    vary = {v.strip().lower() for v in response.headers.get("vary", "").split(",")}
    return response.headers.get("cache-control") == "no-store" and "authorization" in vary


def fingerprint(engine: Engine) -> dict[str, tuple[int, str]]:
    """Row count and a content hash of every table (usage timestamps left out)."""
    result = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            columns = [c for c in table.columns if c.name not in VOLATILE_COLUMNS]
            rows = conn.execute(select(*columns)).all()
            digest = hashlib.sha256()
            for row in sorted(repr(tuple(row)) for row in rows):
                digest.update(row.encode())
            result[table.name] = (len(rows), digest.hexdigest()[:16])
    return result


def changed_tables(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]
                   ) -> list[str]:
    return sorted(name for name in before if before[name] != after.get(name))


