"""Last used (SPEC 5.4, 5.5): an accepted access token marks its connection used, at most
once a minute per connection, and the job writes it to the database in one UPDATE."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import event

from services.registry.jobs import flush_last_used
from services.sync.app import create_app as create_sync
from shared.config import Settings
from shared.db.types import utcnow
from shared.jobs import CONNECTIONS_RECORD_LAST_USED
from shared.last_used import PENDING_KEY, UsageRecorder, marker_key, record_use
from shared.models import Connection
from shared.runtime import Runtime
from tests.services.conftest import running
from tests.services.registry.conftest import World, bearer
from tests.services.registry.support import accountant, set_columns
from worker.main import build_worker


async def _overview_row(client: httpx.AsyncClient, world: World, connection_id) -> dict:
    response = await client.get("/v1/environment/connections", headers=accountant(world))
    assert response.status_code == 200, response.text
    return next(r for r in response.json()["data"] if r["id"] == str(connection_id))


def _count_updates(runtime: Runtime) -> list[str]:
    statements: list[str] = []

    @event.listens_for(runtime.async_engine.sync_engine, "before_cursor_execute")
    def _seen(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            statements.append(statement)

    return statements


async def test_real_api_use_shows_in_the_overview(client: httpx.AsyncClient, world: World,
                                                  settings: Settings, runtime: Runtime,
                                                  redis_client: redis.Redis) -> None:
    connection = world.a.connections[0]
    set_columns(world, Connection, connection.id, created_at=utcnow() - timedelta(days=200))
    before = await _overview_row(client, world, connection.id)
    assert before["last_used_at"] is None and before["stale"] is True

    token = world.connection_token(connection)
    async with running(create_sync(settings)) as sync:
        response = await sync.get("/v1/debtors", headers=bearer(token))
        assert response.status_code == 200, response.text
    assert redis_client.ttl(marker_key(connection.id)) > 0
    assert redis_client.hexists(PENDING_KEY, str(connection.id))

    updates = _count_updates(runtime)
    assert await flush_last_used(runtime.redis, runtime.async_session) == 1
    assert len(updates) == 1
    after = await _overview_row(client, world, connection.id)
    assert after["last_used_at"] is not None and after["stale"] is False
    stale = await client.get("/v1/environment/connections", params={"stale": "true"},
                             headers=accountant(world))
    assert str(connection.id) not in {r["id"] for r in stale.json()["data"]}


async def test_a_second_call_within_the_minute_writes_nothing(
    client: httpx.AsyncClient, world: World, settings: Settings, runtime: Runtime,
    redis_client: redis.Redis,
) -> None:
    connection = world.a.connections[1]
    token = bearer(world.connection_token(connection))
    # The registry's verifier accepts the token (the endpoint then refuses its kind).
    await client.get("/v1/me/connections", headers=token)
    assert await flush_last_used(runtime.redis, runtime.async_session) == 1
    first = (await _overview_row(client, world, connection.id))["last_used_at"]

    await client.get("/v1/me/connections", headers=token)  # same process: no Redis call
    async with running(create_sync(settings)) as sync:  # another process: SET NX loses
        assert (await sync.get("/v1/debtors", headers=token)).status_code == 200
    assert not redis_client.exists(PENDING_KEY)
    updates = _count_updates(runtime)
    assert await flush_last_used(runtime.redis, runtime.async_session) == 0
    assert updates == []
    assert (await _overview_row(client, world, connection.id))["last_used_at"] == first


async def test_a_flushed_redis_only_misses_an_update(client: httpx.AsyncClient, world: World,
                                                     runtime: Runtime,
                                                     redis_client: redis.Redis) -> None:
    connection = world.a.connections[0]
    await client.get("/v1/me/connections", headers=bearer(world.connection_token(connection)))
    redis_client.flushdb()
    assert await flush_last_used(runtime.redis, runtime.async_session) == 0
    # The next use after the window (a new process here) is recorded again.
    recorder = UsageRecorder(runtime.redis)
    assert await recorder.used(connection.id) is True
    assert await recorder.used(connection.id) is False
    assert await flush_last_used(runtime.redis, runtime.async_session) == 1


async def test_user_and_app_tokens_are_not_connection_uses(client: httpx.AsyncClient,
                                                           world: World,
                                                           redis_client: redis.Redis) -> None:
    await client.get("/v1/me/connections",
                     headers=bearer(world.user_token(world.a.users["master_client"])))
    await client.get("/v1/app/connections", headers=bearer(world.app_token(world.apps[0])))
    assert not redis_client.exists(PENDING_KEY)


async def test_redis_failure_never_reaches_the_caller() -> None:
    dead = redis.asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    try:
        assert await UsageRecorder(dead).used(uuid.uuid4()) is False
        assert await record_use(dead, uuid.uuid4()) is False
    finally:
        await dead.aclose()


async def test_refresh_grants_note_once_a_minute(world: World, runtime: Runtime) -> None:
    connection = world.b.connections[0]
    assert await record_use(runtime.redis, connection.id) is True
    assert await record_use(runtime.redis, connection.id) is False
    assert await flush_last_used(runtime.redis, runtime.async_session) == 1
    with world.sessions() as session:
        assert session.get(Connection, connection.id).last_used_at is not None


async def test_an_older_note_never_moves_last_used_back(world: World, runtime: Runtime) -> None:
    connection = world.a.connections[0]
    now = utcnow()
    set_columns(world, Connection, connection.id, last_used_at=now)
    await record_use(runtime.redis, connection.id, at=(now - timedelta(hours=1)).timestamp())
    assert await flush_last_used(runtime.redis, runtime.async_session) == 0
    with world.sessions() as session:
        assert session.get(Connection, connection.id).last_used_at == now


async def test_a_failed_flush_keeps_the_notes_for_the_next(world: World, runtime: Runtime,
                                                            redis_client: redis.Redis) -> None:
    """The notes stay in Redis until the database has them: a flush that fails (or dies)
    leaves them, the next flush writes them, and the notes made meanwhile follow."""
    first, second = world.a.connections[0], world.a.connections[1]
    redis_client.delete(PENDING_KEY, f"{PENDING_KEY}:taking")
    await record_use(runtime.redis, first.id)

    def broken():
        raise RedisConnectionError("database gone")

    with pytest.raises(RedisConnectionError):
        await flush_last_used(runtime.redis, broken)
    assert redis_client.hexists(f"{PENDING_KEY}:taking", str(first.id))
    await record_use(runtime.redis, second.id)  # noted while the first notes wait
    assert await flush_last_used(runtime.redis, runtime.async_session) == 1
    assert await flush_last_used(runtime.redis, runtime.async_session) == 1
    with world.sessions() as session:
        assert all(session.get(Connection, c.id).last_used_at is not None
                   for c in (first, second))
    assert not redis_client.exists(PENDING_KEY, f"{PENDING_KEY}:taking")


def test_the_worker_flushes_twice_a_minute(settings: Settings) -> None:
    worker = build_worker(settings, burst=True)
    job = next(c for c in worker.cron_jobs if c.name == CONNECTIONS_RECORD_LAST_USED)
    assert job.second == {0, 30}
