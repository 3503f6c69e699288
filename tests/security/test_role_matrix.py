"""The role matrix: the within-tenant twin of test_isolation_matrix.py, generated from the
OpenAPI documents and the declared policy (shared/policy).

Every operation of the registry and the sync service is called by every kind of caller
of one environment (each template's first-party token, connection tokens with a wide and
a narrow consent, the partner app's own token, the environment's bound first-party app
and the platform's own app) with every id of the environment that fits its path: ids
inside and outside each caller's reach. Each answer must be what the policy says:

- the rule does not allow the caller kind, or its token (and consent) lacks the scope:
  403;
- allowed, but an id lies outside the caller's reach (`Caller.reaches`, or the object is
  another user's or app's): 404;
- allowed and within reach: 2xx, or a validation answer (400, 409, 412, 422); at least
  one allowed call of each operation succeeds (2xx), so its success path is walked too.

The refused calls of an operation run first, and the database fingerprint must be the
same after them. The operations walked must be exactly those of the documents, and each
names an operation of the table. Every answer, whatever its status, carries
`Cache-Control: no-store` and `Vary: Authorization` (SECURITY 39).
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.app import create_app as create_registry
from services.sync.app import create_app as create_sync
from services.sync.webhooks.signing import new_key_pair
from shared.config import Settings
from shared.db.engine import async_session_factory, create_async_db_engine
from shared.db.types import utcnow
from shared.models import Connection, PayrollRun, SignatureScheme, WebhookEndpoint
from shared.models import UserTemplate as T
from shared.policy import RULES, Caller, CallerKind, Credential, resolve
from shared.policy.dependency import OPERATION_KEY
from shared.tokens import check_claims
from shared.vault import KeyRing, SecretBox
from shared.vault.columns import WEBHOOK_SIGNING_KEY
from tests.fixtures import factories as f
from tests.security.conftest import (
    ALL_USER_SCOPES,
    PARTNER_APP_SCOPES,
    Pair,
    changed_tables,
    fingerprint,
    private,
)
from tests.security.test_isolation_matrix import (
    NOT_APPLICABLE,
    example_body,
    operations,
    path_kinds,
)
from tests.services.conftest import running

SERVICES = {"registry": create_registry, "sync": create_sync}
DOCUMENTS = {name: factory(Settings(_env_file=None)).openapi()
             for name, factory in SERVICES.items()}
# Every operation of both documents that takes an access token.
WALKED = sorted(
    (service, method, path) for service, document in DOCUMENTS.items()
    for method, path, operation in operations(document)
    if RULES[operation[OPERATION_KEY]].credential == Credential.ACCESS_TOKEN
)
# Answers of an allowed call within reach: done, or the input was refused as input.
ALLOWED = {200, 201, 202, 204, 400, 409, 412, 422}
# Slices of an employee: their rows in Side.slices, by path kind.
EMPLOYEE_CHILDREN = {"employment", "account", "component", "leave", "leave_request", "absence"}


def test_every_route_names_a_declared_operation_and_every_rule_is_used() -> None:
    """The walk covers the documents, and the table has no rule that no route uses."""
    named = set()
    for document in DOCUMENTS.values():
        for method, path, operation in operations(document):
            assert operation.get(OPERATION_KEY) in RULES, f"{method} {path}"
            named.add(operation[OPERATION_KEY])
    assert set(RULES) - named == {"metrics"}, "rules no route uses"
    every = {(s, m, p) for s, d in DOCUMENTS.items() for m, p, _ in operations(d)}
    others = {(s, m, p) for s, m, p in every if (m, p) in NOT_APPLICABLE
              or RULES[_operation(s, m, p)].credential != Credential.ACCESS_TOKEN}
    assert set(WALKED) | others == every


def _operation(service: str, method: str, path: str) -> str:
    return DOCUMENTS[service]["paths"][path][method.lower()][OPERATION_KEY]


@dataclass
class Matrix:
    """Environment A of the security pair, with a caller of every kind."""

    pair: Pair
    tokens: dict[str, str]
    callers: dict[str, Caller]

    def owners(self, kind: str, ident: str) -> dict[str, Any]:
        """What an object of A belongs to (for the reach oracle)."""
        side = self.pair.a
        if kind == "employee":
            e = next(e for e in side.employees if str(e.id) == ident)
            return {"environment_id": e.environment_id, "debtor_id": e.debtor_id,
                    "company_id": e.company_id, "employee_id": e.id}
        if kind == "company":
            c = next(c for c in side.tenant.companies if str(c.id) == ident)
            return {"environment_id": c.environment_id, "debtor_id": c.debtor_id,
                    "company_id": c.id}
        if kind == "debtor":
            return {"environment_id": side.tenant.environment.id, "debtor_id": uuid.UUID(ident)}
        rows = side.slices[kind]
        row = next(r for r in rows if str(r.id) == ident)
        if isinstance(row, PayrollRun):
            return {"environment_id": row.environment_id, "debtor_id": row.debtor_id,
                    "company_id": row.company_id}
        return {"environment_id": row.environment_id, "debtor_id": row.debtor_id,
                "company_id": row.company_id, "employee_id": row.employee_id}

    def in_reach(self, caller: Caller, operation: str, ids: dict[str, tuple[str, str]]
                 ) -> bool:
        """Whether every id of the call lies within the caller's reach."""
        side = self.pair.a
        if not ids:
            return True  # a list: what it shows is the isolation matrix's business
        if operation.startswith(("me.connections.", "app.connections.", "grants.")):
            (_, connection_id), = ids.values()  # `connection_id` or `grant_id`
            connection = next(c for c in side.tenant.connections
                              if str(c.id) == connection_id)
            if operation.startswith("me."):
                return caller.user is not None and connection.user_id == caller.user.id
            return caller.app is not None and connection.app_id == caller.app.id
        if operation.startswith("me.access_reviews."):
            (_, item_id), = ids.values()
            item = next(i for i in side.review_items if str(i.id) == item_id)
            review = next(r for r in side.reviews if r.id == item.review_id)
            return (caller.user is not None and item.user_id == caller.user.id
                    and review.reviewer == "consenting_user")
        if operation.startswith("consent_requests."):
            (_, request_id), = ids.values()
            return self.may_decide(caller, request_id)
        if operation.startswith("webhooks."):
            return caller.app is not None and caller.app.id == side.app.id
        if operation.startswith("sandboxes."):  # A's sandbox is its partner's
            owner = side.sandbox.sandbox_partner_id
            return caller.app is not None and caller.app.partner_id == owner
        if operation.startswith(("environment.", "directory.")):
            return True  # every id here is of the caller's own environment
        return all(caller.reaches(**self.owners(kind, ident)) for kind, ident in ids.values())


    def may_decide(self, caller: Caller, request_id: str) -> bool:
        """An accountant decides every request of its environment; a user (whose
        template may consent: every one can by default) those of its debtor whose
        companies it all reaches, never its own."""
        side = self.pair.a
        request = next(r for r in side.consent_requests if str(r.id) == request_id)
        if caller.kind == CallerKind.ACCOUNTANT:
            return True
        user = caller.user
        return (user is not None and user.debtor_id == request.debtor_id
                and user.id != request.user_id
                and (caller.company_ids is None
                     or side.request_companies[request.id] <= caller.company_ids))


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture
async def matrix(pair: Pair, settings: Settings) -> Matrix:
    """The pair's environment A, a payroll & HR manager beside its other users, and a
    caller of every kind, each resolved by the policy as the services will resolve it."""
    a = pair.a
    with pair.world.sessions() as session:
        payroll = f.make_user(session, a.tenant.environment, template=T.PAYROLL_HR_MANAGER,
                              companies=a.tenant.companies[1:2])
        session.commit()
        session.refresh(payroll)
    a.tenant.users["payroll_hr_manager"] = payroll
    tokens = {name: pair.world.user_token(user, ALL_USER_SCOPES)
              for name, user in a.tenant.users.items()}
    wide = next(c for c in a.tenant.connections if c.app_id == a.app.id)
    narrow = a.tenant.connections[-1]  # the company login's: two read scopes
    tokens["connection_wide"] = pair.world.connection_token(wide)
    tokens["connection_narrow"] = pair.world.connection_token(narrow)
    tokens["partner_app"] = pair.world.app_token(a.app, PARTNER_APP_SCOPES)
    tokens["first_party_app"] = pair.world.app_token(pair.world.first_party,
                                                     "directory.manage")
    with pair.world.sessions() as session:
        platform = f.make_app(session, first_party=True, platform=True,
                              grant_types=["client_credentials"])
        session.commit()
    tokens["platform_app"] = pair.world.app_token(platform, "directory.manage")
    engine = create_async_db_engine(settings.resolved_database_url)
    try:
        async with async_session_factory(engine)() as session:
            callers = {name: await _resolved(session, settings, token)
                       for name, token in tokens.items()}
    finally:
        await engine.dispose()
    return Matrix(pair, tokens, callers)


async def _resolved(session: AsyncSession, settings: Settings, token: str) -> Caller:
    principal = check_claims(_claims(token), issuer=settings.issuer,
                             audience=settings.api_audience, now=time.time())
    return await resolve(session, principal)


def _id_sets(matrix: Matrix, kinds: dict[str, str]) -> Iterator[dict[str, tuple[str, str]]]:
    """Every id of A for the path, nested consistently (a slice row with its employee,
    a delivery with its endpoint): {parameter: (kind, id)}."""
    side = matrix.pair.a
    child = [(n, k) for n, k in kinds.items() if k in EMPLOYEE_CHILDREN]
    if child:
        name, kind = child[0]
        for row in side.slices[kind]:
            yield {name: (kind, str(row.id)), "employee_id": ("employee", str(row.employee_id))}
        return
    if "review_id" in kinds and "item_id" in kinds:
        for item in side.review_items:
            yield {"review_id": ("review", str(item.review_id)),
                   "item_id": ("review_item", str(item.id))}
        return
    if "delivery_id" in kinds:
        for delivery in side.deliveries:
            yield {"endpoint_id": ("endpoint", str(delivery.endpoint_id)),
                   "delivery_id": ("delivery", str(delivery.id))}
        return
    names = list(kinds)
    for values in itertools.product(*(side.ids(kinds[n]) for n in names)):
        yield {n: (kinds[n], v) for n, v in zip(names, values, strict=True)}


def _expected(matrix: Matrix, caller: Caller, operation: str,
              ids: dict[str, tuple[str, str]]) -> set[int]:
    rule = RULES[operation]
    if not rule.allows(caller.kind):
        return {403}
    if rule.scopes and not any(caller.has_scope(s) for s in rule.scopes):
        return {403}
    if not matrix.in_reach(caller, operation, ids):
        return {404}
    return ALLOWED


def _example(matrix: Matrix, operation: str, body: dict | None) -> dict | None:
    """The isolation matrix's example body, with what this environment's success path
    needs: its own debtor and company, dates clear of the pair's leave requests, a webhook URL the
    tests may reach, a bulk revoke of one app (a dry run)."""
    side = matrix.pair.a
    debtor = side.tenant.debtors[0]
    company = next(c for c in side.tenant.companies if c.debtor_id == debtor.id)
    override: dict[str, Any] = {
        "directory.users.create": {"debtor_id": str(debtor.id),
                                   "company_ids": [str(company.id)]},
        "environment.connections.bulk_revoke": {"filter": {"app": side.app.client_id}},
        "leave_requests.create": {"start_date": "2027-01-04", "end_date": "2027-01-05"},
        "webhooks.create": {"url": "http://127.0.0.1:9/role-matrix"},
    }.get(operation, {})
    return None if body is None else {**body, **override}


def _prepare(matrix: Matrix, operation: str, keyring: KeyRing) -> None:
    """Rows an operation's success path needs beyond the pair: connections that expire
    (renew answers 409 for one that does not), an endpoint that signs with Ed25519
    (rotate-key answers 409 for an HMAC one)."""
    side = matrix.pair.a
    with matrix.pair.world.sessions() as session:
        if operation == "me.connections.renew":
            for ident in (c.id for c in side.tenant.connections):
                row = session.get(Connection, ident)
                assert row is not None
                row.expires_at = utcnow() + timedelta(days=30)
                session.add(row)
        if operation == "webhooks.rotate_key":
            endpoint = session.get(WebhookEndpoint, side.endpoints[0].id)
            assert endpoint is not None
            private_key, endpoint.public_key = new_key_pair()
            endpoint.signature_scheme = SignatureScheme.ED25519
            WEBHOOK_SIGNING_KEY.seal(SecretBox(keyring), endpoint, private_key)
            session.add(endpoint)
        session.commit()


@pytest.mark.parametrize(("service", "method", "path"), WALKED)
async def test_every_caller_gets_what_the_policy_says(
    service: str, method: str, path: str, matrix: Matrix, engine: Engine, keyring: KeyRing,
) -> None:
    document = DOCUMENTS[service]
    op = document["paths"][path][method.lower()]
    operation = op[OPERATION_KEY]
    kinds = path_kinds(method, path, op)
    body = _example(matrix, operation, example_body(document, op))
    _prepare(matrix, operation, keyring)
    calls = [(name, ids, _expected(matrix, matrix.callers[name], operation, ids))
             for name, ids in itertools.product(matrix.tokens, list(_id_sets(matrix, kinds)))]
    # Refused calls first: they must change nothing.
    calls.sort(key=lambda call: call[2] == ALLOWED)
    failures: list[str] = []
    app = SERVICES[service](matrix.pair.world.settings)
    async with running(app) as client:
        before = fingerprint(engine)
        checked = succeeded = False
        last_allowed = ""
        for name, ids, expected in calls:
            if expected == ALLOWED and not checked:
                touched = changed_tables(before, fingerprint(engine))
                if touched:
                    failures.append(f"refused calls changed {touched}")
                checked = True
            url = path.format(**{n: v for n, (_, v) in ids.items()})
            response = await client.request(method, url, json=body,
                                            headers={"Authorization":
                                                     f"Bearer {matrix.tokens[name]}"})
            if expected == ALLOWED:
                succeeded = succeeded or response.is_success
                last_allowed = f"{response.status_code} {response.text[:300]}"
            if response.status_code not in expected:
                failures.append(f"{name}: {method} {url} -> {response.status_code}, "
                                f"expected {sorted(expected)}: {response.text[:160]}")
            if not private(response):  # SECURITY 39: personal data is never cached
                failures.append(f"{name}: {method} {url} -> {response.status_code} with "
                                f"Cache-Control {response.headers.get('cache-control')!r}, "
                                f"Vary {response.headers.get('vary')!r}")
        if not checked:
            touched = changed_tables(before, fingerprint(engine))
            if touched:
                failures.append(f"refused calls changed {touched}")
    assert not failures, f"{operation}:\n" + "\n".join(failures[:30])
    outcomes = {frozenset(e) for _, _, e in calls}
    assert frozenset(ALLOWED) in outcomes, (
        f"{operation}: no caller may perform it; the walk tests nothing")
    # An allowed call that only ever meets a validation answer proves nothing about the
    # operation's success path: at least one allowed call succeeds.
    assert succeeded, (f"{operation}: no allowed call succeeded (see _example and _prepare);"
                       f" the last answered {last_allowed}")

