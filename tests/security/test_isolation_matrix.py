"""The tenant-isolation matrix (SECURITY 20, 21, 23), generated from the OpenAPI documents.

Environment B's partner has a sandbox: its id, and the ids of its debtors, companies,
users and employees, are among B's ids, so every route is walked with a sandbox's ids
too and no list may show one.

For every operation of the registry and the sync service with a path parameter, every
id of environment B of the right kind is put in the path and the call is made as every
kind of caller of environment A: it must answer 404 or 403 (401 where the route takes
another kind of credential) and change nothing in the database. Every list (no path
ids) is read by every caller, also with B's ids in its filters, and must not contain a
single id of B. A route that appears in a document without being walked here (or listed
as not applicable, with the reason) fails the test: new routes need coverage.
"""

from __future__ import annotations

import itertools
import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from services.registry.app import create_app as create_registry
from services.sync.app import create_app as create_sync
from shared.models import AccessReviewItem, Connection
from tests.security.conftest import CALLERS, Pair, changed_tables, fingerprint
from tests.services.conftest import running

SERVICES = {"registry": create_registry, "sync": create_sync}

# Path parameter name -> kind of object (see Side.ids).
PARAM_KINDS = {
    "connection_id": "connection", "employee_id": "employee", "company_id": "company",
    "grant_id": "connection",  # Grant Management: a grant is a connection
    "debtor_id": "debtor", "user_id": "user", "environment_id": "environment",
    "client_id": "client", "endpoint_id": "endpoint", "delivery_id": "delivery",
    "account_id": "account", "employment_id": "employment", "component_id": "component",
    "wage_component_id": "component", "absence_id": "absence", "leave_balance_id": "leave",
    "leave_request_id": "leave_request",
    "run_id": "payroll_run", "payroll_run_id": "payroll_run", "event_id": "event",
    "sandbox_id": "sandbox", "review_id": "review", "item_id": "review_item",
    "request_id": "consent_request",
}
# Where a route names its parameter just `id` (or something generic): (method, path) ->
# {parameter: kind}. None today; a new route using `{id}` must be added here.
ROUTE_KINDS: dict[tuple[str, str], dict[str, str]] = {}
# Query parameters that take an id: name -> kind (filters of lists).
QUERY_KINDS = {"debtor_id": "debtor", "company_id": "company", "app": "client",
               "user": "user", "debtor": "debtor", "company": "company",
               "actor_id": "user", "subject_id": "connection",
               "client_id": "client"}  # the data-access log's app filter

# Routes that take a credential of another kind than an API access token: every caller
# of A is a stranger to them (401; A's own registration token is not B's), whatever the id.
OTHER_CREDENTIAL = re.compile(r"^/oauth2/register/")
# Routes that no caller of a tenant may use at all (platform-level provisioning): every
# caller is refused before any lookup. On every other route at least one caller must get
# as far as the lookup (404), or the walk would test nothing but scopes.
REFUSED_TO_TENANTS = re.compile(r"^/v1/directory/|^/oauth2/register/")

NOT_APPLICABLE = {
    ("GET", "/healthz"): "public probe, no tenant data",
    ("GET", "/readyz"): "public probe, no tenant data",
    ("GET", "/v1/scopes/wording/{sha256}"):
        "public, content-addressed scope wording (catalogue texts, no tenant data); "
        "tests/services/registry/test_consent_receipts_e2e.py",
    ("PUT", "/v1/environment/policy/apps/{client_id}"):
        "apps are platform-wide: the decision is stored for the caller's own environment "
        "(environment taken from the token; tests/services/registry/test_policy_and_audit.py)",
    ("PUT", "/v1/environment/policy/consent-templates"):
        "no id: changes the caller's own environment only (test_policy_and_audit.py)",
    ("PUT", "/v1/environment/policy/approvals"):
        "no id: changes the caller's own environment only "
        "(test_policy_and_audit.py::test_the_approval_settings_change_the_callers_"
        "environment_only)",
    ("PUT", "/v1/environment/policy/consent-lifetime"):
        "no id: changes the caller's own environment only "
        "(tests/services/registry/test_consent_lifetime.py)",
    ("POST", "/v1/webhooks"): "no id: creates an endpoint of the calling app only "
                              "(tests/services/sync/test_webhooks_api.py)",
    ("POST", "/v1/directory/environments"):
        "platform-level provisioning (first-party client credentials), no tenant in scope; "
        "refused to every caller here: see test_provisioning_is_refused_to_tenant_callers",
    ("POST", "/v1/sandboxes"): "no id: creates a sandbox of the caller's own partner "
                               "(tests/services/registry/test_sandboxes.py)",
    ("POST", "/oauth2/register"): "RFC 7591 registration with a partner's initial access "
                                  "token; no tenant data (test_registration.py)",
}
# Ids in a request body instead of the path: walked by their own tests below.
BODY_IDS = {("POST", "/v1/environment/connections/bulk-revoke"):
            "test_bulk_revoke_with_foreign_ids_touches_nothing",
            ("POST", "/v1/environment/access-reviews"):
            "test_an_access_review_with_foreign_ids_covers_nothing_of_theirs"}

EXAMPLES: dict[str, Any] = {
    "reason": "isolation test", "name": "Isolation", "number": "ISO-1",
    "email": "iso@example.test", "template": "company", "first_name": "Iso",
    "last_name": "Lation", "iban": "NL02RABO0123456789", "account_holder": "I. Solation",
    "end_date": "2026-12-31", "valid_to": "2026-12-31", "valid_from": "2026-01-01",
    "start_date": "2026-01-01", "code": "BONUS", "description": "isolation",
    "amount_cents": 100, "currency": "EUR", "url": "https://hooks.example.test/iso",
    "events": ["employee.updated"], "blocked": True, "filter": {}, "dry_run": True,
    "consent_templates": ["company"], "consent_lifetime_days": 90, "company_ids": [],
    "hours_per_week": 32.0,
    "function": "Engineer", "department": "R&D", "birth_date": "1990-01-01",
    "username": "iso@example.test", "password": "isolation-password",
    "debtor_id": "00000000-0000-4000-8000-000000000000",
    "leave_type": "statutory", "hours": 8.0, "status": "cancelled",
    "client_name": "Isolation", "client_id": "isolation-client",
    "since": "2026-01-01T00:00:00Z", "scopes": ["company.info.read"],
    "reviewer": "accountant", "due_at": "2099-01-01T00:00:00Z", "default_decision": "keep",
    "decision": "keep", "default_app_state": "allowed", "state": "blocked",
    "approval_request_templates": ["company"], "justification": "isolation",
}
# `state`: an app policy decision (its older form `blocked` is optional too).
PATCH_PREFERRED = ("state", "description", "account_holder", "first_name", "name", "reason")


def _schema(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return schema


def example_body(document: dict, operation: dict) -> dict | None:
    """A valid body for the operation (so that only the ids can make it fail)."""
    body = operation.get("requestBody")
    if body is None:
        return None
    schema = _schema(document, next(iter(body["content"].values()))["schema"])
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    names = list(required) or [n for n in PATCH_PREFERRED if n in properties][:1]
    missing = [n for n in names if n not in EXAMPLES]
    assert not missing, f"add examples for {missing} ({operation.get('operationId')})"
    return {n: EXAMPLES[n] for n in names}


def operations(document: dict) -> list[tuple[str, str, dict]]:
    return [(method.upper(), path, op) for path, ops in document["paths"].items()
            for method, op in ops.items()]


def path_kinds(method: str, path: str, operation: dict) -> dict[str, str]:
    names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
    specific = ROUTE_KINDS.get((method, path), {})
    kinds = {n: specific.get(n) or PARAM_KINDS.get(n) for n in names}
    unknown = [n for n, k in kinds.items() if k is None]
    assert not unknown, f"{method} {path}: map path parameters {unknown} to a kind"
    return kinds  # type: ignore[return-value]


def substitutions(pair: Pair, kinds: dict[str, str]) -> list[dict[str, str]]:
    """Every combination with at least one foreign id: B's i-th id of each kind together
    (consistent nesting in B), and each foreign id beside A's own ids for the rest."""
    own = {name: pair.a.ids(kind)[0] for name, kind in kinds.items()}
    foreign = {name: pair.b.ids(kind) for name, kind in kinds.items()}
    combos: list[dict[str, str]] = []
    count = max(len(v) for v in foreign.values())
    for i in range(count):
        combos.append({n: ids[i % len(ids)] for n, ids in foreign.items()})
        if len(kinds) > 1:
            for name, ids in foreign.items():
                combos.append({**own, name: ids[i % len(ids)]})
    unique = {tuple(sorted(c.items())) for c in combos}
    return [dict(c) for c in sorted(unique)]


def _expected(path: str, caller: str) -> set[int]:
    if OTHER_CREDENTIAL.match(path):
        return {401, 403}
    # An RFC 7592 registration token is no access token: 401 on the APIs.
    return {401} if caller == "registration" else {403, 404}


async def _walk_path_routes(client: httpx.AsyncClient, pair: Pair, engine: Engine,
                            document: dict, walked: set[tuple[str, str]]) -> list[str]:
    failures: list[str] = []
    for method, path, operation in operations(document):
        if "{" not in path or (method, path) in NOT_APPLICABLE:
            continue
        walked.add((method, path))
        kinds = path_kinds(method, path, operation)
        body = example_body(document, operation)
        before = fingerprint(engine)
        reached = False
        for values, caller in itertools.product(substitutions(pair, kinds), CALLERS):
            url = path.format(**values)
            response = await client.request(method, url, json=body,
                                            headers=pair.headers(caller))
            reached |= response.status_code == 404
            if response.status_code not in _expected(path, caller):
                failures.append(f"{caller}: {method} {url} -> {response.status_code} "
                                f"{response.text[:200]}")
        if not reached and not REFUSED_TO_TENANTS.match(path):
            failures.append(f"{method} {path}: no caller got past the scope checks (no 404)")
        touched = changed_tables(before, fingerprint(engine))
        if touched:
            failures.append(f"{method} {path}: side effects in {touched}")
    return failures


async def _walk_lists(client: httpx.AsyncClient, pair: Pair, document: dict,
                      walked: set[tuple[str, str]]) -> tuple[list[str], int]:
    failures: list[str] = []
    foreign = pair.b.all_ids()
    own = pair.a.all_ids()
    useful = 0  # answers that did list objects of A (so the check is not vacuous)
    for method, path, operation in operations(document):
        if "{" in path or method != "GET" or (method, path) in NOT_APPLICABLE:
            continue
        walked.add((method, path))
        filters = [p["name"] for p in operation.get("parameters", [])
                   if p["in"] == "query" and p["name"] in QUERY_KINDS]
        variants: list[tuple[dict[str, str], dict[str, str]]] = [({}, {})]
        variants += [({name: pair.b.ids(QUERY_KINDS[name])[0]}, {}) for name in filters]
        if path == "/v1/environment/connections":
            variants.append(({}, {"Accept": "text/csv"}))
        # Tenant and role claims supplied by the caller are ignored (SECURITY 23).
        b_env = pair.b.ids("environment")[0]
        variants.append(({"environment_id": b_env, "role": "accountant"},
                         {"X-Tenant-ID": b_env, "X-Environment-ID": b_env}))
        for (params, extra), caller in itertools.product(variants, CALLERS):
            response = await client.get(path, params=params,
                                        headers={**pair.headers(caller), **extra})
            if response.status_code >= 500:
                failures.append(f"{caller}: GET {path} {params} -> {response.status_code}")
            leaked = sorted(i for i in foreign if i in response.text)
            if leaked:
                failures.append(f"{caller}: GET {path} {params} lists B's ids {leaked[:3]}")
            if response.status_code == 200 and any(i in response.text for i in own):
                useful += 1
    return failures, useful


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_line20_every_foreign_id_on_every_route_is_refused_without_side_effects(
    service: str, pair: Pair, engine: Engine
) -> None:
    app = SERVICES[service](pair.world.settings)
    document = app.openapi()
    walked: set[tuple[str, str]] = set()
    async with running(app) as client:
        failures = await _walk_path_routes(client, pair, engine, document, walked)
        list_failures, useful = await _walk_lists(client, pair, document, walked)
    failures += list_failures
    assert not failures, "\n".join(failures[:40]) + f"\n({len(failures)} in all)"
    assert useful >= 5, "the lists showed no data of A at all: the check would be vacuous"

    every = {(m, p) for m, p, _ in operations(document)}
    accounted = walked | NOT_APPLICABLE.keys() | BODY_IDS.keys()
    assert every - accounted == set(), f"routes without isolation coverage: {every - accounted}"
    assert accounted >= every


async def test_bulk_revoke_with_foreign_ids_touches_nothing(pair: Pair) -> None:
    """Filters naming B's users, debtors, companies or apps select nothing of B."""
    b = pair.b
    filters = [{"user": b.ids("user")[1]}, {"debtor": b.ids("debtor")[0]},
               {"company": b.ids("company")[0]}, {"app": b.app.client_id}]
    async with running(create_registry(pair.world.settings)) as client:
        for flt, caller in itertools.product(filters, CALLERS):
            response = await client.post(
                "/v1/environment/connections/bulk-revoke", headers=pair.headers(caller),
                json={"reason": "isolation", "filter": flt, "dry_run": False})
            assert response.status_code in (200, 401, 403, 404), (caller, flt, response.text)
            assert not b.all_ids() & set(re.findall(r"[0-9a-f-]{36}", response.text))
    with pair.world.sessions() as session:
        rows = session.exec(select(Connection).where(
            Connection.environment_id == b.tenant.environment.id)).all()
    assert rows and {row.status for row in rows} == {"active"}


async def test_an_access_review_with_foreign_ids_covers_nothing_of_theirs(pair: Pair) -> None:
    """A review whose filter names B's users, debtors, companies or apps gets no item of
    B's connections (the filter only ever narrows the caller's own environment)."""
    b = pair.b
    filters = [{"user": b.ids("user")[1]}, {"debtor": b.ids("debtor")[0]},
               {"company": b.ids("company")[0]}, {"app": b.app.client_id}]
    created = 0
    async with running(create_registry(pair.world.settings)) as client:
        for flt, caller in itertools.product(filters, CALLERS):
            response = await client.post(
                "/v1/environment/access-reviews", headers=pair.headers(caller),
                json={"name": "isolation", "filter": flt, "reviewer": "accountant",
                      "due_at": "2099-01-01T00:00:00Z", "default_decision": "revoke"})
            assert response.status_code in (201, 401, 403, 404), (caller, flt, response.text)
            if response.status_code == 201:
                created += 1
                assert response.json()["item_count"] == 0, (caller, flt)
                items = await client.get(
                    f"/v1/environment/access-reviews/{response.json()['id']}/items",
                    headers=pair.headers(caller))
                assert items.json()["data"] == []
    assert created == len(filters)  # the accountant made one review of each filter
    b_connections = [uuid.UUID(i) for i in b.ids("connection")]
    with pair.world.sessions() as session:
        foreign = session.exec(select(AccessReviewItem).where(
            col(AccessReviewItem.connection_id).in_(b_connections),
            col(AccessReviewItem.review_id).not_in([r.id for r in b.reviews]))).all()
    assert foreign == []


async def test_provisioning_is_refused_to_tenant_callers(pair: Pair, engine: Engine) -> None:
    """Only the first-party provisioner may create environments; a tenant's user, app or
    connection gets 403 and nothing is created."""
    before = fingerprint(engine)
    async with running(create_registry(pair.world.settings)) as client:
        for caller in CALLERS:
            response = await client.post("/v1/directory/environments",
                                          json={"name": "Sneaky"}, headers=pair.headers(caller))
            assert response.status_code in (401, 403), (caller, response.text)
    assert changed_tables(before, fingerprint(engine)) == []
