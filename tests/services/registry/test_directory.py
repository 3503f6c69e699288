"""Provisioning (SPEC 5.7) and the suspension rules it drives (SPEC section 3)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlmodel import select

from shared.audit import verify_environment
from shared.models import AuditEvent, Connection, Event, User, UserCompany
from shared.runtime import Runtime
from shared.tokens import InvalidToken, TokenVerifier
from tests.services.registry.conftest import World, bearer


def provisioner(world: World) -> dict[str, str]:
    return bearer(world.app_token(world.first_party, "directory.manage"))


async def test_only_a_first_party_app_with_the_scope_provisions(client: httpx.AsyncClient,
                                                                 world: World) -> None:
    body = {"name": "New Firm"}
    for headers in (bearer(world.app_token(world.first_party, "connections.read")),
                    bearer(world.app_token(world.apps[0], "directory.manage")),
                    bearer(world.user_token(world.a.users["accountant"])),
                    {}):
        response = await client.post("/v1/directory/environments", json=body, headers=headers)
        assert response.status_code in (401, 403)


async def test_builds_a_whole_environment(client: httpx.AsyncClient, world: World) -> None:
    headers = provisioner(world)
    env = (await client.post("/v1/directory/environments", json={"name": "Firm"},
                             headers=headers)).json()
    debtor = await client.post(f"/v1/directory/environments/{env['id']}/debtors",
                               json={"name": "Bakker", "number": "D1"}, headers=headers)
    assert debtor.status_code == 201, debtor.text
    company = await client.post(f"/v1/directory/debtors/{debtor.json()['id']}/companies",
                                json={"name": "Bakker BV", "number": "C1"}, headers=headers)
    assert company.status_code == 201, company.text
    user = await client.post(
        f"/v1/directory/environments/{env['id']}/users",
        json={"email": "HR@Bakker.example", "name": "Hanna", "template": "hr_manager",
              "company_ids": [company.json()["id"]], "password": "a long enough secret"},
        headers=headers)
    assert user.status_code == 201, user.text
    assert user.json()["email"] == "hr@bakker.example"
    assert user.json()["debtor_id"] == debtor.json()["id"]
    again = await client.post(
        f"/v1/directory/environments/{env['id']}/users",
        json={"email": "hr@bakker.example", "name": "Twin", "template": "accountant"},
        headers=headers)
    assert again.status_code == 409
    renamed = await client.patch(f"/v1/directory/companies/{company.json()['id']}",
                                 json={"name": "Bakker Holding BV"}, headers=headers)
    assert renamed.json()["name"] == "Bakker Holding BV"
    with world.sessions() as session:
        assert verify_environment(session, uuid.UUID(env["id"])) == []
        assert session.exec(select(Event).where(Event.type == "company.updated")).one()


@pytest.mark.parametrize("body", [
    {"template": "accountant", "debtor": True},
    {"template": "hr_manager"},
    {"template": "company", "foreign_company": True},
    {"template": "master_client"},
    {"template": "boss"},
    {"template": "accountant", "email": "not-an-email"},
    {"template": "accountant", "password": "short"},
    {"template": "accountant", "environment_id": "x"},
])
async def test_bad_users_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient, world: World, body: dict
) -> None:
    payload = {"email": f"{uuid.uuid4().hex}@x.example", "name": "N", "template": body["template"]}
    if body.get("debtor"):
        payload["debtor_id"] = str(world.a.debtors[0].id)
    if body.get("foreign_company"):
        payload["company_ids"] = [str(world.b.companies[0].id)]
    for key in ("email", "password", "environment_id"):
        if key in body:
            payload[key] = body[key]
    response = await client.post(f"/v1/directory/environments/{world.a.environment.id}/users",
                                 json=payload, headers=provisioner(world))
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"
    with world.sessions() as session:
        assert session.exec(select(User).where(User.name == "N")).all() == []
        assert session.exec(select(AuditEvent)).all() == []


async def test_deactivating_a_user_suspends_and_reactivating_resumes(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    user = world.a.users["master_client"]
    mine = [c for c in world.a.connections if c.user_id == user.id]
    token = world.connection_token(mine[0])
    first_party_token = world.user_token(user, "connections.read")
    verifier = TokenVerifier.from_runtime(runtime)
    try:
        await verifier.verify(token)
        await verifier.verify(first_party_token)
        off = await client.patch(f"/v1/directory/users/{user.id}", json={"active": False},
                                 headers=provisioner(world))
        assert off.status_code == 200, off.text
        assert off.json()["connections"] == {"suspended": len(mine), "resumed": 0,
                                             "expired": 0, "narrowed": 0}
        for revoked in (token, first_party_token):
            with pytest.raises(InvalidToken):
                await verifier.verify(revoked)
        with world.sessions() as session:
            for c in mine:
                stored = session.get(Connection, c.id)
                assert (stored.status, stored.suspended_reason) == ("suspended",
                                                                    "user_deactivated")
            other = session.get(Connection, world.a.connections[-1].id)
            assert other.status == "active"
        on = await client.patch(f"/v1/directory/users/{user.id}", json={"active": True},
                                headers=provisioner(world))
        assert on.json()["connections"]["resumed"] == len(mine)
        await verifier.verify(token)
    finally:
        verifier.close()
    with world.sessions() as session:
        types = sorted(e.type for e in session.exec(select(Event)).all())
        assert types == ["connection.resumed"] * len(mine) + ["connection.suspended"] * len(mine)
        assert verify_environment(session, world.a.environment.id) == []


async def test_a_template_that_may_not_consent_suspends_and_revoked_stays_revoked(
    client: httpx.AsyncClient, world: World
) -> None:
    user = world.a.users["company"]
    connection = world.a.connections[-1]
    headers = provisioner(world)
    changed = await client.patch(f"/v1/directory/users/{user.id}",
                                 json={"template": "employee", "debtor_id":
                                       str(world.a.debtors[0].id)}, headers=headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["connections"]["suspended"] == 1
    await client.delete(f"/v1/me/connections/{world.a.connections[0].id}",
                        headers=bearer(world.user_token(world.a.users["master_client"])))
    # The environment now lets only master clients consent: the employee's stays suspended.
    environment = f"/v1/directory/environments/{world.a.environment.id}"
    narrowed = await client.patch(environment, json={"consent_templates": ["master_client"]},
                                  headers=headers)
    assert narrowed.status_code == 200, narrowed.text
    with world.sessions() as session:
        assert session.get(Connection, connection.id).status == "suspended"
        assert session.get(Connection, world.a.connections[0].id).status == "revoked"
    # An environment can never let self-service employees (or accountants) consent.
    for never in (["master_client", "employee"], ["accountant"]):
        refused = await client.patch(environment, json={"consent_templates": never},
                                     headers=headers)
        assert refused.status_code == 422, refused.text
    # Back to a company login, in an environment where company logins may consent.
    back = await client.patch(f"/v1/directory/users/{user.id}", json={"template": "company"},
                              headers=headers)
    assert back.status_code == 200, back.text
    await client.patch(environment, json={"consent_templates": ["company"]}, headers=headers)
    with world.sessions() as session:
        assert session.get(Connection, connection.id).status == "active"
        assert session.get(Connection, world.a.connections[1].id).status == "suspended"
        assert session.get(Connection, world.a.connections[0].id).status == "revoked"
        assert all(session.get(Connection, c.id).status == "active" for c in world.b.connections)


async def test_a_connection_never_reaches_further_than_its_user(
    client: httpx.AsyncClient, world: World
) -> None:
    a, headers = world.a, provisioner(world)
    master = a.users["master_client"]
    moved = await client.patch(f"/v1/directory/users/{master.id}", headers=headers,
                               json={"template": "hr_manager",
                                     "company_ids": [str(a.companies[0].id)]})
    assert moved.status_code == 200, moved.text
    assert moved.json()["connections"]["narrowed"] == 2
    company_user = a.users["company"]
    elsewhere = await client.patch(f"/v1/directory/users/{company_user.id}", headers=headers,
                                   json={"company_ids": [str(a.companies[1].id)]})
    assert elsewhere.json()["connections"]["narrowed"] == 1
    listed = await client.get("/v1/environment/connections", headers=bearer(
        world.user_token(a.users["accountant"])))
    rows = {r["id"]: r for r in listed.json()["data"]}
    for connection in a.connections[:2]:
        row = rows[str(connection.id)]
        assert (row["status"], row["company_ids"]) == ("active", [str(a.companies[0].id)])
    assert rows[str(a.connections[-1].id)]["status"] == "revoked"
    with world.sessions() as session:
        types = sorted(e.type for e in session.exec(select(Event)).all())
        assert types == ["connection.revoked", "connection.updated", "connection.updated"]
        assert verify_environment(session, a.environment.id) == []


async def test_reads_and_lists(client: httpx.AsyncClient, world: World) -> None:
    headers = provisioner(world)
    a = world.a
    debtor = await client.get(f"/v1/directory/debtors/{a.debtors[0].id}", headers=headers)
    assert debtor.json()["environment_id"] == str(a.environment.id)
    company = await client.get(f"/v1/directory/companies/{a.companies[0].id}", headers=headers)
    assert company.json()["debtor_id"] == str(a.debtors[0].id)
    assert (await client.get(f"/v1/directory/companies/{uuid.uuid4()}",
                             headers=headers)).status_code == 404
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"/v1/directory/environments/{a.environment.id}/users",
                                    params=params, headers=headers)
        assert response.status_code == 200, response.text
        seen += response.json()["data"]
        if not (cursor := response.json()["next_cursor"]):
            break
    assert {u["id"] for u in seen} == {str(u.id) for u in a.users.values()}
    hr = await client.get(f"/v1/directory/environments/{a.environment.id}/users",
                          params={"template": "hr_manager"}, headers=headers)
    [only] = hr.json()["data"]
    assert len(only["company_ids"]) == 2
    bad = await client.get(f"/v1/directory/environments/{a.environment.id}/users",
                           params={"cursor": "x"}, headers=headers)
    assert bad.status_code == 400


async def test_a_master_client_with_company_rows_can_still_be_changed(
    client: httpx.AsyncClient, world: World
) -> None:
    """`koppel demo seed` gives its master client company rows, which the directory never
    writes for one (issue 14, finding 11): a patch that does not move the user leaves
    them alone, one that does drops them; a login promoted to master client loses its
    company rows without having to say so."""
    user = world.a.users["master_client"]
    with world.sessions() as session, session.begin():
        for company in world.a.companies[:2]:
            session.add(UserCompany(user_id=user.id, company_id=company.id))
    path, headers = f"/v1/directory/users/{user.id}", provisioner(world)
    renamed = await client.patch(path, json={"name": "Renamed"}, headers=headers)
    assert renamed.status_code == 200, renamed.text
    assert len(renamed.json()["company_ids"]) == 2
    moved = await client.patch(path, json={"debtor_id": str(world.a.debtors[0].id)},
                               headers=headers)
    assert moved.status_code == 200, moved.text
    assert moved.json()["company_ids"] == []
    company_login = world.a.users["company"]
    promoted = await client.patch(f"/v1/directory/users/{company_login.id}",
                                  json={"template": "master_client",
                                        "debtor_id": str(world.a.debtors[0].id)},
                                  headers=headers)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["company_ids"] == []
    with world.sessions() as session:
        assert verify_environment(session, world.a.environment.id) == []
