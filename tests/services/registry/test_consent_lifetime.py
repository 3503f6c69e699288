"""The consent lifetime in the registry (issue 19 item 1): the policy route refuses
lifetimes out of range and changes nothing; status precedence (revoked over suspended
over expired, a resumed suspension past its time becomes `expired`); the overview's
`expires_before` filter, `expires_at` sort (both directions, paged) and CSV column.
The end to end flow with real consent is in test_consent_lifetime_e2e.py."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta

import httpx
import pytest
import redis
from sqlmodel import select

from services.registry.connections.expiry import apply_lifetime, expire_due
from services.registry.jobs import expire_connections
from shared.audit import Actor, append_async
from shared.db.types import utcnow
from shared.models import AuditEvent, Connection, Environment, Event
from shared.runtime import Runtime
from shared.status import Subject, status_key
from tests.services.registry.conftest import World, bearer
from tests.services.registry.support import accountant, set_columns

LIFETIME = "/v1/environment/policy/consent-lifetime"
DAY = timedelta(days=1)


def _stored(world: World) -> dict:
    with world.sessions() as session:
        return {c.id: c for c in session.exec(select(Connection)).all()}


def _event_types(world: World, connection_id) -> list[str]:
    with world.sessions() as session:
        return [e.type for e in session.exec(select(Event).where(
            Event.connection_id == connection_id).order_by(Event.id)).all()]


@pytest.mark.parametrize("body", [
    {"consent_lifetime_days": 29}, {"consent_lifetime_days": 731},
    {"consent_lifetime_days": 90, "consent_lifetime_days_by_sensitivity": {"secret": 90}},
    {"consent_lifetime_days": 90, "consent_lifetime_days_by_sensitivity": {"special": 7}},
    {"consent_lifetime_days_by_sensitivity": {"special": 90}},
    {"consent_lifetime_days": "forever"}, {"consent_lifetime_days": 90, "extra": 1},
])
async def test_a_lifetime_out_of_range_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, world: World, body: dict
) -> None:
    response = await client.put(LIFETIME, json=body, headers=accountant(world))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    with world.sessions() as session:
        environment = session.get(Environment, world.a.environment.id)
        assert environment is not None and environment.consent_lifetime_days is None
        assert session.exec(select(AuditEvent).where(
            AuditEvent.action == "policy.consent_lifetime_changed")).first() is None
    assert all(c.expires_at is None for c in _stored(world).values())


async def test_a_lifetime_applies_to_the_callers_environment_only(
    client: httpx.AsyncClient, world: World
) -> None:
    now = utcnow()
    response = await client.put(LIFETIME, json={"consent_lifetime_days": 120},
                                headers=accountant(world))
    assert response.status_code == 200, response.text
    assert response.json()["updated"] == len(world.a.connections)
    stored = _stored(world)
    for connection in world.a.connections:
        expires = stored[connection.id].expires_at
        assert expires is not None and abs(expires - (now + 120 * DAY)) < timedelta(minutes=5)
    assert all(stored[c.id].expires_at is None for c in world.b.connections)
    # The same policy again changes nothing and is not audited twice.
    again = await client.put(LIFETIME, json={"consent_lifetime_days": 120},
                             headers=accountant(world))
    assert again.json()["updated"] == 0
    with world.sessions() as session:
        assert len(session.exec(select(AuditEvent).where(
            AuditEvent.action == "policy.consent_lifetime_changed")).all()) == 1


@pytest.mark.postgres_only
async def test_the_expiry_job_waits_for_a_lifetime_change_in_progress(
    world: World, runtime: Runtime,
) -> None:
    """A lifetime change holds its environment (FOR NO KEY UPDATE, as the policy route
    does) and locks the live connections as it gives them new expiries; the expiry job,
    starting then, waits for the connection's lock (no deadlock: the job's reference to
    the environment waits for nothing) and then finds the new expiry: the connection
    stays active."""
    now = utcnow()
    due = world.a.connections[0]
    set_columns(world, Environment, world.a.environment.id, consent_lifetime_days=30)
    set_columns(world, Connection, due.id, created_at=now - 60 * DAY, expires_at=now - DAY)

    async def job() -> list:
        async with runtime.async_session() as session:
            done = await expire_due(session, now)
            await session.commit()
            return done

    async with runtime.async_session() as change:
        environment = await change.get(Environment, world.a.environment.id,
                                       with_for_update={"key_share": True})
        assert environment is not None
        environment.consent_lifetime_days = 120
        change.add(environment)
        await change.flush()
        assert await apply_lifetime(change, environment, now) == len(world.a.connections)
        expiring = asyncio.ensure_future(job())
        await asyncio.sleep(0.5)
        assert not expiring.done()  # waiting for the connection
        await change.commit()
    assert await expiring == []
    stored = _stored(world)[due.id]
    assert stored.status == "active"
    assert stored.expires_at is not None and stored.expires_at > utcnow() + 50 * DAY


@pytest.mark.postgres_only
async def test_a_lifetime_change_never_renews_a_connection_the_job_is_expiring(
    client: httpx.AsyncClient, world: World, runtime: Runtime,
) -> None:
    """The expiry job and a lifetime change at the same time (PostgreSQL runs them side
    by side; SQLite one writer at a time): the change waits for the job's lock and
    leaves the connection it expired alone, never `expired` with a future expiry."""
    now = utcnow()
    due = world.a.connections[0]
    set_columns(world, Environment, world.a.environment.id, consent_lifetime_days=30)
    set_columns(world, Connection, due.id, created_at=now - 60 * DAY, expires_at=now - DAY)
    async with runtime.async_session() as job:
        assert await expire_due(job, now) == [due.id]  # locked, not committed yet
        change = asyncio.ensure_future(client.put(
            LIFETIME, json={"consent_lifetime_days": 120}, headers=accountant(world)))
        await asyncio.sleep(0.5)
        await job.commit()
    response = await change
    assert response.status_code == 200, response.text
    assert response.json()["updated"] == len(world.a.connections) - 1
    stored = _stored(world)[due.id]
    assert stored.status == "expired"
    assert stored.expires_at is not None and stored.expires_at < utcnow()


@pytest.mark.postgres_only
async def test_a_revoke_and_a_lifetime_change_at_once_never_deadlock(
    client: httpx.AsyncClient, world: World, runtime: Runtime,
) -> None:
    """A user's write to a connection (revoke, renew, narrow: the row locked, then an
    audit event that refers to the environment) while the accountant changes the
    lifetime (the environment locked, then its connections): the change holds the
    environment FOR NO KEY UPDATE, so the write's reference does not wait for it; the
    write commits, the change then skips the revoked connection."""
    set_columns(world, Environment, world.a.environment.id, consent_lifetime_days=30)
    target = world.a.connections[0]
    async with runtime.async_session() as write:
        row = await write.get(Connection, target.id, with_for_update=True)
        assert row is not None
        row.status, row.revoked_at = "revoked", utcnow()
        write.add(row)
        await write.flush()
        change = asyncio.ensure_future(client.put(
            LIFETIME, json={"consent_lifetime_days": 120}, headers=accountant(world)))
        await asyncio.sleep(0.5)  # the change holds the environment, waits for the row
        await append_async(write, world.a.environment.id, "connection.revoked",
                           Actor("user", str(target.user_id)), "connection", target.id)
        await write.commit()
    response = await change
    assert response.status_code == 200, response.text
    assert response.json()["updated"] == len(world.a.connections) - 1
    stored = _stored(world)[target.id]
    assert stored.status == "revoked" and stored.expires_at is None


async def test_suspended_outranks_expired_and_a_resumed_suspension_past_its_time_expires(
    client: httpx.AsyncClient, world: World, runtime: Runtime, redis_client: redis.Redis,
) -> None:
    assert (await client.put(LIFETIME, json={"consent_lifetime_days": 30},
                             headers=accountant(world))).status_code == 200
    blocked_app, other_app = world.apps
    on_blocked = [c for c in world.a.connections if c.app_id == blocked_app.id]
    [on_other] = [c for c in world.a.connections if c.app_id == other_app.id]
    path = f"/v1/environment/policy/apps/{blocked_app.client_id}"
    blocked = await client.put(path, json={"blocked": True}, headers=accountant(world))
    assert blocked.json() == {"suspended": 2, "resumed": 0, "expired": 0}

    # The time passes (the worker's job, with `now` moved): the active one expires, the
    # suspended ones stay suspended.
    counts = await expire_connections({"runtime": runtime}, now=utcnow() + 31 * DAY)
    assert counts == {"expiring": 0, "expired": 1}
    stored = _stored(world)
    assert stored[on_other.id].status == "expired"
    assert redis_client.get(status_key(Subject.CONNECTION, on_other.id)) == b"0"
    assert all(stored[c.id].status == "suspended" for c in on_blocked)
    assert all("connection.expired" not in _event_types(world, c.id) for c in on_blocked)

    # An expired connection whose app is blocked is suspended (suspended outranks it).
    other_path = f"/v1/environment/policy/apps/{other_app.client_id}"
    moved = await client.put(other_path, json={"blocked": True}, headers=accountant(world))
    assert moved.json() == {"suspended": 1, "resumed": 0, "expired": 0}
    assert _stored(world)[on_other.id].status == "suspended"

    # Resuming after the expiry time: `expired`, never active; the app is told.
    for connection in (*on_blocked, on_other):
        set_columns(world, Connection, connection.id, expires_at=utcnow() - timedelta(minutes=1))
    allowed = await client.put(path, json={"blocked": False}, headers=accountant(world))
    assert allowed.json() == {"suspended": 0, "resumed": 0, "expired": 2}
    allowed = await client.put(other_path, json={"blocked": False}, headers=accountant(world))
    assert allowed.json() == {"suspended": 0, "resumed": 0, "expired": 1}
    stored = _stored(world)
    for connection in (*on_blocked, on_other):
        assert stored[connection.id].status == "expired"
        assert _event_types(world, connection.id)[-1] == "connection.expired"
        assert redis_client.get(status_key(Subject.CONNECTION, connection.id)) == b"0"

    # A suspension that ends before the expiry resumes as before.
    set_columns(world, Connection, on_other.id, status="suspended", expires_at=utcnow() + DAY)
    resumed = await client.put(other_path, json={"blocked": False}, headers=accountant(world))
    assert resumed.json() == {"suspended": 0, "resumed": 1, "expired": 0}
    assert _stored(world)[on_other.id].status == "active"

    # The summary counts expired connections.
    summary = (await client.get("/v1/environment/connections/summary",
                                headers=accountant(world))).json()["data"]
    by_app = {row["app"]["client_id"]: row for row in summary}
    assert by_app[blocked_app.client_id]["expired"] == 2


async def _ids(client: httpx.AsyncClient, world: World, **params) -> list[str]:
    response = await client.get("/v1/environment/connections", params=params,
                                headers=accountant(world))
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["data"]]


async def _walk(client: httpx.AsyncClient, world: World, **params) -> list[str]:
    """Every page of one at a time, following the cursors."""
    ids: list[str] = []
    cursor = None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        response = await client.get("/v1/environment/connections", headers=accountant(world),
                                    params={**params, "limit": 1, **extra})
        assert response.status_code == 200, response.text
        ids += [row["id"] for row in response.json()["data"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return ids


async def test_the_overview_filters_sorts_and_exports_by_expiry(
    client: httpx.AsyncClient, world: World
) -> None:
    soon, later, never = world.a.connections
    now = utcnow()
    set_columns(world, Connection, soon.id, expires_at=now + 5 * DAY)
    set_columns(world, Connection, later.id, expires_at=now + 20 * DAY)
    order = [str(soon.id), str(later.id), str(never.id)]

    assert await _ids(client, world, expires_before=(now + 10 * DAY).isoformat()) == [
        str(soon.id)]
    assert await _ids(client, world, sort="expires_at") == order
    assert await _ids(client, world, sort="-expires_at") == order[::-1]
    assert await _walk(client, world, sort="expires_at") == order
    assert await _walk(client, world, sort="-expires_at") == order[::-1]
    rows = {row["id"]: row for row in (await client.get(
        "/v1/environment/connections", headers=accountant(world))).json()["data"]}
    assert rows[str(never.id)]["expires_at"] is None
    assert rows[str(soon.id)]["expires_at"] is not None

    for sort in ("expires_at", "-expires_at", "created_at"):
        response = await client.get("/v1/environment/connections", params={"sort": sort},
                                    headers={**accountant(world), "Accept": "text/csv"})
        assert response.status_code == 200, response.text
        table = list(csv.DictReader(io.StringIO(response.text)))
        if sort != "created_at":
            expected = order if sort == "expires_at" else order[::-1]
            assert [row["id"] for row in table] == expected
        cells = {row["id"]: row["expires_at"] for row in table}
        assert cells[str(never.id)] == ""
        assert cells[str(soon.id)] == (now + 5 * DAY).isoformat()
    filtered = await client.get(
        "/v1/environment/connections", params={"expires_before": (now + 10 * DAY).isoformat()},
        headers={**accountant(world), "Accept": "text/csv"})
    assert [row["id"] for row in csv.DictReader(io.StringIO(filtered.text))] == [str(soon.id)]


async def test_renewing_through_the_api_keeps_a_suspension_and_refuses_what_never_expires(
    client: httpx.AsyncClient, world: World, runtime: Runtime,
) -> None:
    user = world.a.users["master_client"]
    mine = bearer(world.user_token(user, "connections.read connections.manage"))
    first, second = [c for c in world.a.connections if c.user_id == user.id]
    never = await client.post(f"/v1/me/connections/{first.id}/renew", headers=mine)
    assert never.status_code == 409  # no lifetime yet: it does not expire
    assert (await client.put(LIFETIME, json={"consent_lifetime_days": 30},
                             headers=accountant(world))).status_code == 200

    # An expired connection shows in the overview's status filter, then is renewed.
    await expire_connections({"runtime": runtime}, now=utcnow() + 31 * DAY)
    expired_ids = await _ids(client, world, status="expired")
    assert str(first.id) in expired_ids and str(second.id) in expired_ids
    before = utcnow()
    renewed = await client.post(f"/v1/me/connections/{first.id}/renew", headers=mine)
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["status"] == "active"
    stored = _stored(world)[first.id]
    assert stored.expires_at is not None and stored.expires_at >= before + 30 * DAY
    assert _event_types(world, first.id)[-1] == "connection.renewed"

    # An expired connection of an app the accountant blocked meanwhile is renewed (a new
    # expiry) but comes back suspended: the policy's rules hold for it as for any other.
    app = next(a for a in world.apps if a.id == second.app_id)
    set_columns(world, Connection, second.id, status="expired")  # the block finds it expired
    blocked = await client.put(f"/v1/environment/policy/apps/{app.client_id}",
                               json={"blocked": True}, headers=accountant(world))
    assert blocked.status_code == 200, blocked.text
    set_columns(world, Connection, second.id, status="expired", suspended_reason=None)
    kept = await client.post(f"/v1/me/connections/{second.id}/renew", headers=mine)
    assert kept.status_code == 200 and kept.json()["status"] == "suspended", kept.text
    assert _stored(world)[second.id].suspended_reason == "app_blocked"
    assert _stored(world)[second.id].expires_at >= before + 30 * DAY

    # Another user's connection, or one of environment B: 404, nothing changed.
    other = next(c for c in world.a.connections if c.user_id != user.id)
    for foreign in (other, world.b.connections[0]):
        answer = await client.post(f"/v1/me/connections/{foreign.id}/renew", headers=mine)
        assert answer.status_code == 404
        assert _stored(world)[foreign.id].renewed_at is None


@pytest.mark.parametrize("name", ["expires_before", "created_after", "created_before",
                                  "last_used_after", "last_used_before"])
@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
async def test_a_time_with_no_utc_equivalent_is_a_422_not_a_500(
    client: httpx.AsyncClient, world: World, name: str, value: str
) -> None:
    for accept in ("application/json", "text/csv"):
        response = await client.get("/v1/environment/connections", params={name: value},
                                    headers={**accountant(world), "Accept": accept})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")



async def test_a_login_whose_template_may_no_longer_consent_cannot_renew(
    client: httpx.AsyncClient, world: World,
) -> None:
    """Renewing extends consent: only a login that may consent now may renew. The role
    admits every template that can consent anywhere; the environment's own consent
    templates narrow it (403, nothing changed)."""
    user = world.a.users["master_client"]
    mine = bearer(world.user_token(user, "connections.read connections.manage"))
    connection = next(c for c in world.a.connections if c.user_id == user.id)
    assert (await client.put(LIFETIME, json={"consent_lifetime_days": 30},
                             headers=accountant(world))).status_code == 200
    narrowed = await client.put("/v1/environment/policy/consent-templates",
                                json={"consent_templates": ["company"]},
                                headers=accountant(world))
    assert narrowed.status_code == 200, narrowed.text
    before = _stored(world)[connection.id]
    refused = await client.post(f"/v1/me/connections/{connection.id}/renew", headers=mine)
    assert refused.status_code == 403, refused.text
    after = _stored(world)[connection.id]
    assert (after.expires_at, after.renewed_at) == (before.expires_at, before.renewed_at)
