"""Scope usage (issue 19 item 4): a connection's call notes the consented scope its rule
needed, at most once a minute per connection and scope (one Redis round trip, no database
write); the worker's flush merges the notes into `connections.scope_used_at`, never moving
a time back nor bringing back a scope dropped meanwhile; a failed flush gives them back.
The full path (real consent, real sync calls, the views) is test_scope_usage_e2e.py."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from services.registry.connections.usage import unused_scopes
from services.registry.jobs import flush_scope_uses
from services.sync.app import create_app as create_sync
from shared.config import Settings
from shared.db.types import utcnow
from shared.last_used import (
    SCOPE_PENDING_KEY,
    UsageRecorder,
    marker_key,
    scope_field,
    scope_marker_key,
)
from shared.models import Connection
from shared.runtime import Runtime
from shared.scopes import granting_scope
from tests.fixtures.factories import make_employee
from tests.services.conftest import running
from tests.services.registry.conftest import World, bearer
from tests.services.registry.support import set_columns


def _stored(world: World, ident) -> Connection:
    with world.sessions() as session:
        row = session.get(Connection, ident)
        assert row is not None
        return row


def test_the_scope_that_satisfied_a_rule() -> None:
    assert granting_scope({"employee.info.read"}, "employee.info.read") == "employee.info.read"
    # A write scope covers its read scope: the write scope is the one used.
    assert granting_scope({"employee.info"}, "employee.info.read") == "employee.info"
    assert granting_scope({"company.info.read"}, "employee.info.read") is None


async def test_a_sync_call_notes_its_scope_and_the_flush_writes_it(
        world: World, settings: Settings, runtime: Runtime, redis_client: redis.Redis) -> None:
    connection = world.a.connections[0]
    redis_client.delete(SCOPE_PENDING_KEY)
    async with running(create_sync(settings)) as sync:
        for _ in range(2):
            response = await sync.get("/v1/debtors",
                                      headers=bearer(world.connection_token(connection)))
            assert response.status_code == 200, response.text
    assert redis_client.ttl(scope_marker_key(connection.id, "company.info.read")) > 0
    assert redis_client.hkeys(SCOPE_PENDING_KEY) == [
        scope_field(connection.id, "company.info.read").encode()]
    assert _stored(world, connection.id).scope_used_at == {}  # no write per call
    assert await flush_scope_uses(runtime.redis, runtime.async_session) == 1
    used = _stored(world, connection.id).scope_used_at
    assert list(used) == ["company.info.read"]
    assert abs(datetime.fromisoformat(used["company.info.read"]) - utcnow()) < timedelta(minutes=1)
    assert not redis_client.exists(SCOPE_PENDING_KEY)


async def test_with_tracking_off_a_sync_call_notes_no_scope_but_its_last_use(
        world: World, settings: Settings, redis_client: redis.Redis) -> None:
    """KOPPEL_SCOPE_USAGE_TRACKING=false (the benchmark's comparison): no scope note, the
    connection's last use still noted."""
    connection = world.a.connections[0]
    redis_client.delete(SCOPE_PENDING_KEY, marker_key(connection.id))
    untracked = settings.model_copy(update={"scope_usage_tracking": False})
    async with running(create_sync(untracked)) as sync:
        response = await sync.get("/v1/debtors",
                                  headers=bearer(world.connection_token(connection)))
        assert response.status_code == 200, response.text
    assert not redis_client.exists(SCOPE_PENDING_KEY)
    assert not redis_client.exists(scope_marker_key(connection.id, "company.info.read"))
    assert redis_client.exists(marker_key(connection.id))


async def test_user_tokens_note_no_scope(client: httpx.AsyncClient, world: World,
                                         redis_client: redis.Redis) -> None:
    redis_client.delete(SCOPE_PENDING_KEY)
    listed = await client.get("/v1/me/connections",
                              headers=bearer(world.user_token(world.a.users["master_client"])))
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"]  # the user's token reached connections, and noted no scope
    assert not redis_client.exists(SCOPE_PENDING_KEY)


async def test_the_flush_never_moves_back_nor_revives_a_dropped_scope(
        world: World, runtime: Runtime, redis_client: redis.Redis) -> None:
    connection = world.a.connections[0]
    granted = list(_stored(world, connection.id).scopes)
    kept, dropped = granted[0], "not.granted.scope"
    now = utcnow()
    set_columns(world, Connection, connection.id, scope_used_at={kept: now.isoformat()})
    redis_client.delete(SCOPE_PENDING_KEY)
    recorder = UsageRecorder(runtime.redis)
    assert await recorder.scope_used(connection.id, kept, (now - timedelta(hours=1)).timestamp())
    assert await recorder.scope_used(connection.id, kept) is False  # within the minute
    assert await recorder.scope_used(connection.id, dropped) is True
    assert await flush_scope_uses(runtime.redis, runtime.async_session) == 0
    assert _stored(world, connection.id).scope_used_at == {kept: now.isoformat()}


async def test_a_failed_flush_keeps_the_scope_notes_for_the_next(
        world: World, runtime: Runtime, redis_client: redis.Redis) -> None:
    connection = world.a.connections[0]
    scope = _stored(world, connection.id).scopes[0]
    redis_client.delete(SCOPE_PENDING_KEY, f"{SCOPE_PENDING_KEY}:taking")
    assert await UsageRecorder(runtime.redis).scope_used(connection.id, scope)

    def broken():
        raise RedisConnectionError("database gone")

    with pytest.raises(RedisConnectionError):
        await flush_scope_uses(runtime.redis, broken)
    assert redis_client.hexists(f"{SCOPE_PENDING_KEY}:taking",
                                scope_field(connection.id, scope))
    assert await flush_scope_uses(runtime.redis, runtime.async_session) == 1
    assert not redis_client.exists(f"{SCOPE_PENDING_KEY}:taking")


def test_unused_scopes_need_30_days_granted_and_90_unused(world: World) -> None:
    connection = _stored(world, world.a.connections[0].id)
    scopes = list(connection.scopes)
    now = connection.created_at
    assert unused_scopes(connection, now + timedelta(days=29)) == []
    assert unused_scopes(connection, now + timedelta(days=31)) == scopes  # never used
    connection.scope_used_at = {scopes[0]: (now + timedelta(days=20)).isoformat()}
    assert scopes[0] not in unused_scopes(connection, now + timedelta(days=109))
    assert scopes[0] in unused_scopes(connection, now + timedelta(days=111))


@pytest.mark.parametrize("consented", ["employee.info.read", "employee.info"])
async def test_the_employee_read_notes_the_scope_that_allowed_it(
        world: World, settings: Settings, redis_client: redis.Redis, consented: str) -> None:
    """GET /v1/employees/{id} (sync's fast read) notes its scope too: the consented one
    that covers `employee.info.read`, the write scope when that is what was granted."""
    connection = world.a.connections[0]
    set_columns(world, Connection, connection.id, scopes=[consented])
    connection.scopes = [consented]  # the token asks for what the consent grants
    with world.sessions() as session:
        employee = make_employee(session, world.a.companies[0])
        session.commit()
        employee_id = employee.id
    redis_client.delete(SCOPE_PENDING_KEY, scope_marker_key(connection.id, consented))
    async with running(create_sync(settings)) as sync:
        answer = await sync.get(f"/v1/employees/{employee_id}",
                                headers=bearer(world.connection_token(connection)))
        assert answer.status_code == 200, answer.text
    assert redis_client.hkeys(SCOPE_PENDING_KEY) == [
        scope_field(connection.id, consented).encode()]
