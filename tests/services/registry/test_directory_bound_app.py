"""The provisioning API for a first-party app bound to environment A: A's environment,
debtors, companies and users are its own; every id of environment B answers 404 and
changes nothing; only a platform-wide app creates environments (SECURITY.md line 34)."""

from __future__ import annotations

import uuid

import httpx
import redis
from sqlalchemy import Engine
from sqlmodel import select

from shared.models import App, Environment
from tests.fixtures import factories as f
from tests.security.conftest import changed_tables, fingerprint
from tests.services.registry.conftest import Tenant, World, bearer

PASSWORD = "a long enough secret"


def _bound_app(world: World) -> App:
    with world.sessions() as session:
        app = f.make_app(session, first_party=True, environment=world.a.environment,
                         grant_types=["client_credentials"])
        session.commit()
    return app


def _operations(tenant: Tenant) -> dict[tuple[str, str], tuple[str, dict | None]]:
    """Every directory operation with a path id: (method, template) -> (path, body)."""
    env, debtor = tenant.environment.id, tenant.debtors[0].id
    company, user = tenant.companies[0].id, tenant.users["hr_manager"].id
    new_user = {"email": f"{uuid.uuid4().hex[:8]}@example.test", "name": "New",
                "template": "accountant"}
    return {
        ("get", "/v1/directory/environments/{environment_id}"):
            (f"/v1/directory/environments/{env}", None),
        ("patch", "/v1/directory/environments/{environment_id}"):
            (f"/v1/directory/environments/{env}", {"name": "Renamed"}),
        ("post", "/v1/directory/environments/{environment_id}/debtors"):
            (f"/v1/directory/environments/{env}/debtors", {"name": "New", "number": "D9"}),
        ("get", "/v1/directory/environments/{environment_id}/users"):
            (f"/v1/directory/environments/{env}/users", None),
        ("post", "/v1/directory/environments/{environment_id}/users"):
            (f"/v1/directory/environments/{env}/users", new_user),
        ("get", "/v1/directory/debtors/{debtor_id}"): (f"/v1/directory/debtors/{debtor}", None),
        ("patch", "/v1/directory/debtors/{debtor_id}"):
            (f"/v1/directory/debtors/{debtor}", {"name": "Renamed"}),
        ("post", "/v1/directory/debtors/{debtor_id}/companies"):
            (f"/v1/directory/debtors/{debtor}/companies", {"name": "New", "number": "C9"}),
        ("get", "/v1/directory/companies/{company_id}"):
            (f"/v1/directory/companies/{company}", None),
        ("patch", "/v1/directory/companies/{company_id}"):
            (f"/v1/directory/companies/{company}", {"name": "Renamed"}),
        ("get", "/v1/directory/users/{user_id}"): (f"/v1/directory/users/{user}", None),
        ("patch", "/v1/directory/users/{user_id}"):
            (f"/v1/directory/users/{user}", {"password": PASSWORD, "active": False}),
    }


async def _call(client: httpx.AsyncClient, method: str, path: str, body: dict | None,
                headers: dict[str, str]) -> httpx.Response:
    return await client.request(method.upper(), path, json=body, headers=headers)


async def test_a_bound_app_reaches_its_own_environment_only(
    client: httpx.AsyncClient, world: World, engine: Engine, redis_client: redis.Redis,
) -> None:
    headers = bearer(world.app_token(_bound_app(world), "directory.manage"))
    document = (await client.get("/openapi.json")).json()
    documented = {(method, path) for path, item in document["paths"].items()
                  if path.startswith("/v1/directory/") and "{" in path for method in item}
    theirs, mine = _operations(world.b), _operations(world.a)
    assert set(theirs) == documented  # a new directory route must be added here

    before = fingerprint(engine)
    for (method, template), (path, body) in theirs.items():
        response = await _call(client, method, path, body, headers)
        assert response.status_code == 404, (method, template, response.text)
        # The same answer as for an id that exists nowhere.
        unknown = path
        for ident in (world.b.environment.id, world.b.debtors[0].id, world.b.companies[0].id,
                      world.b.users["hr_manager"].id):
            unknown = unknown.replace(str(ident), str(uuid.uuid4()))
        missing = await _call(client, method, unknown, body, headers)
        assert (missing.status_code, missing.json()["detail"]) == (
            404, response.json()["detail"]), template
    assert changed_tables(before, fingerprint(engine)) == []
    # B's user was not signed out either.
    assert redis_client.keys("koppel:signed-out:*") == []

    for (method, template), (path, body) in mine.items():
        response = await _call(client, method, path, body, headers)
        assert response.status_code in (200, 201), (method, template, response.text)
    listed = await client.get(f"/v1/directory/environments/{world.a.environment.id}/users",
                              headers=headers)
    assert {u["environment_id"] for u in listed.json()["data"]} == {
        str(world.a.environment.id)}
    # Ids of B in a body of A's own objects are refused as well.
    moved = await client.patch(f"/v1/directory/users/{world.a.users['company'].id}",
                               json={"company_ids": [str(world.b.companies[0].id)]},
                               headers=headers)
    assert moved.status_code == 422, moved.text


async def test_only_a_platform_wide_app_creates_environments(
    client: httpx.AsyncClient, world: World, engine: Engine,
) -> None:
    bound = bearer(world.app_token(_bound_app(world), "directory.manage"))
    before = fingerprint(engine)
    refused = await client.post("/v1/directory/environments", json={"name": "Sneaky"},
                                headers=bound)
    assert refused.status_code == 403, refused.text
    assert "directory.environments.create" in refused.json()["detail"]
    assert changed_tables(before, fingerprint(engine)) == []

    platform = bearer(world.app_token(world.first_party, "directory.manage"))
    created = await client.post("/v1/directory/environments", json={"name": "New Firm"},
                                headers=platform)
    assert created.status_code == 201, created.text
    # The platform-wide app reaches every environment, the new one included.
    for env_id in (world.a.environment.id, world.b.environment.id, created.json()["id"]):
        got = await client.get(f"/v1/directory/environments/{env_id}", headers=platform)
        assert got.status_code == 200, got.text
    with world.sessions() as session:
        names = set(session.exec(select(Environment.name)).all())
    assert "New Firm" in names and "Sneaky" not in names
