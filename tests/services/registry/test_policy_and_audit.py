"""The environment's app policy, its audit log and `koppel audit verify` (SPEC 5.5)."""

from __future__ import annotations

import json

import httpx
from sqlmodel import select

from shared.models import AuditEvent, Connection, Event
from tests.cli.conftest import Invoke, cli_env, invoke  # noqa: F401 - fixtures
from tests.services.registry.conftest import World, bearer
from tests.services.registry.support import accountant


def _statuses(world: World) -> dict:
    with world.sessions() as session:
        return {c.id: c.status for c in session.exec(select(Connection)).all()}


async def test_blocking_an_app_suspends_it_here_and_allowing_resumes(
    client: httpx.AsyncClient, world: World
) -> None:
    app = world.apps[0]
    path = f"/v1/environment/policy/apps/{app.client_id}"
    blocked = await client.put(path, json={"blocked": True, "reason": "no DPA"},
                               headers=accountant(world))
    assert blocked.status_code == 200, blocked.text
    assert blocked.json() == {"suspended": 2, "resumed": 0, "expired": 0}
    statuses = _statuses(world)
    for c in world.a.connections:
        assert statuses[c.id] == ("suspended" if c.app_id == app.id else "active")
    assert all(statuses[c.id] == "active" for c in world.b.connections)
    token = world.connection_token(world.a.connections[0])
    assert (await client.get("/v1/app/connections", headers=bearer(token))).status_code == 401

    policy = await client.get("/v1/environment/policy", headers=accountant(world))
    assert policy.json()["apps"][0]["blocked"] is True
    assert policy.json()["consent_templates_default"] is True
    in_b = await client.get("/v1/environment/policy", headers=accountant(world, world.b))
    assert in_b.json()["apps"] == []

    allowed = await client.put(path, json={"blocked": False}, headers=accountant(world))
    assert allowed.json() == {"suspended": 0, "resumed": 2, "expired": 0}
    assert all(s == "active" for s in _statuses(world).values())
    with world.sessions() as session:
        types = sorted(e.type for e in session.exec(select(Event)).all())
        assert types == ["connection.resumed"] * 2 + ["connection.suspended"] * 2


async def test_policy_refuses_bad_input_and_other_roles(client: httpx.AsyncClient,
                                                        world: World) -> None:
    headers = accountant(world)
    for path, body in (
        (f"/v1/environment/policy/apps/{world.first_party.client_id}", {"blocked": True}),
        ("/v1/environment/policy/apps/unknown", {"blocked": True}),
        (f"/v1/environment/policy/apps/{world.apps[0].client_id}", {"blocked": "perhaps"}),
        (f"/v1/environment/policy/apps/{world.apps[0].client_id}", {}),
        ("/v1/environment/policy/consent-templates", {"consent_templates": ["boss"]}),
    ):
        response = await client.put(path, json=body, headers=headers)
        assert 400 <= response.status_code < 500, (path, body)
    master = bearer(world.user_token(world.a.users["master_client"]))
    response = await client.put(f"/v1/environment/policy/apps/{world.apps[0].client_id}",
                                json={"blocked": True}, headers=master)
    assert response.status_code == 403
    assert all(s == "active" for s in _statuses(world).values())


async def test_consent_templates_policy(client: httpx.AsyncClient, world: World) -> None:
    response = await client.put("/v1/environment/policy/consent-templates",
                                json={"consent_templates": ["company"]},
                                headers=accountant(world))
    assert response.json() == {"suspended": 2, "resumed": 0, "expired": 0}
    reset = await client.put("/v1/environment/policy/consent-templates",
                             json={"consent_templates": None}, headers=accountant(world))
    assert reset.json() == {"suspended": 0, "resumed": 2, "expired": 0}


async def test_audit_events_are_listed_per_environment(client: httpx.AsyncClient,
                                                       world: World) -> None:
    for connection in world.a.connections[:2]:
        await client.post(f"/v1/environment/connections/{connection.id}/revoke",
                          json={"reason": "tidy"}, headers=accountant(world))
    await client.put(f"/v1/environment/policy/apps/{world.apps[0].client_id}",
                     json={"blocked": True}, headers=accountant(world))
    first = await client.get("/v1/environment/audit-events?limit=2", headers=accountant(world))
    assert first.status_code == 200, first.text
    body = first.json()
    assert [e["seq"] for e in body["data"]] == [4, 3]
    rest = await client.get("/v1/environment/audit-events",
                            params={"limit": 2, "cursor": body["next_cursor"]},
                            headers=accountant(world))
    assert [e["seq"] for e in rest.json()["data"]] == [2, 1]
    revokes = await client.get("/v1/environment/audit-events",
                               params={"action": "connection.revoked", "order": "asc"},
                               headers=accountant(world))
    assert [e["subject"]["id"] for e in revokes.json()["data"]] == [
        str(c.id) for c in world.a.connections[:2]]
    in_b = await client.get("/v1/environment/audit-events", headers=accountant(world, world.b))
    assert in_b.json()["data"] == []
    for params in ({"cursor": "-1"}, {"limit": "9999"}, {"order": "up"}, {"tenant": "b"}):
        bad = await client.get("/v1/environment/audit-events", params=params,
                               headers=accountant(world))
        assert 400 <= bad.status_code < 500
    # A time with no UTC equivalent is bad input (422), not a 500 from the query.
    for params in ({"created_after": "0001-01-01T00:00:00+01:00"},
                   {"created_before": "9999-12-31T23:59:59-01:00"}):
        bad = await client.get("/v1/environment/audit-events", params=params,
                               headers=accountant(world))
        assert bad.status_code == 422, bad.text
    employee = bearer(world.user_token(world.a.users["employee"]))
    assert (await client.get("/v1/environment/audit-events",
                             headers=employee)).status_code == 403


async def test_audit_verify_finds_an_edited_and_a_deleted_event(
    client: httpx.AsyncClient, world: World, invoke: Invoke  # noqa: F811
) -> None:
    for connection in world.a.connections:
        await client.post(f"/v1/environment/connections/{connection.id}/revoke",
                          json={"reason": "tidy"}, headers=accountant(world))
    clean = invoke("audit", "verify", "--json")
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.stdout)["ok"] is True

    with world.sessions() as session:
        events = session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()
        events[0].details = {**events[0].details, "reason": "nothing to see"}
        session.add(events[0])
        session.commit()
    edited = invoke("audit", "verify", "--json")
    assert edited.exit_code == 1
    assert [f["seq"] for f in json.loads(edited.stdout)["faults"]] == [1]

    with world.sessions() as session:
        session.delete(session.get(AuditEvent, events[1].id))
        session.commit()
    deleted = invoke("audit", "verify", "--environment", str(world.a.environment.id))
    assert deleted.exit_code == 1
    assert "missing" in deleted.stdout or "does not follow" in deleted.stdout
    assert invoke("audit", "verify", "--environment", "nope").exit_code == 2


async def test_the_approval_settings_change_the_callers_environment_only(
        client: httpx.AsyncClient, world: World) -> None:
    """PUT /v1/environment/policy/approvals takes no id: A's accountant sets A's default
    state and request templates, and B's policy stays as it was."""
    before_b = (await client.get("/v1/environment/policy",
                                 headers=accountant(world, world.b))).json()
    changed = await client.put("/v1/environment/policy/approvals", headers=accountant(world),
                               json={"default_app_state": "approval_required",
                                     "approval_request_templates": ["company"]})
    assert changed.status_code == 200, changed.text
    in_a = (await client.get("/v1/environment/policy", headers=accountant(world))).json()
    assert in_a["default_app_state"] == "approval_required"
    assert in_a["approval_request_templates_default"] is False
    in_b = (await client.get("/v1/environment/policy",
                             headers=accountant(world, world.b))).json()
    assert in_b == before_b
    assert in_b["default_app_state"] == "allowed"
    assert in_b["approval_request_templates_default"] is True
