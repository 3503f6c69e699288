"""The in-process status mirror: it never answers "active" after Redis said otherwise."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import pytest
import redis

from shared.config import Settings
from shared.redis_embedded import resolved_redis_url
from shared.status import Subject, publish, status_key
from shared.status_mirror import StatusMirror

KEYS = [status_key(Subject.CONNECTION, "c1"), status_key(Subject.FAMILY, "f1")]


@pytest.fixture
async def mirror(settings: Settings, redis_client: redis.Redis) -> AsyncIterator[StatusMirror]:
    mirror = StatusMirror(resolved_redis_url(settings))
    assert await mirror.ensure_connected()
    yield mirror
    mirror.close()


async def test_remembered_keys_are_known_until_redis_changes_one(
    mirror: StatusMirror, redis_client: redis.Redis
) -> None:
    ticket = mirror.lookup(KEYS)
    assert ticket is not None
    mirror.remember(KEYS, ticket)
    assert mirror.lookup(KEYS) is None
    assert mirror.lookup(KEYS[:1]) is None
    publish(redis_client, [(Subject.FAMILY, "f1", False)])
    assert mirror.lookup(KEYS) is not None
    assert mirror.lookup(KEYS[:1]) is None  # the other key was not touched


async def test_an_invalidation_between_lookup_and_remember_wins(
    mirror: StatusMirror, redis_client: redis.Redis
) -> None:
    ticket = mirror.lookup(KEYS)
    assert ticket is not None
    # Redis answered "active", then a writer published before the answer was stored.
    publish(redis_client, [(Subject.CONNECTION, "c1", False)])
    mirror.remember(KEYS, ticket)
    assert mirror.lookup(KEYS) is not None


async def test_lookups_of_one_key_at_once_each_keep_their_ticket(
    mirror: StatusMirror, redis_client: redis.Redis
) -> None:
    """Concurrent requests with one token: a later lookup does not void an earlier one's
    ticket (under load every lookup overtook the previous one, and nothing was ever
    remembered), but a change after a lookup voids it, whatever came later."""
    first, second = mirror.lookup(KEYS), mirror.lookup(KEYS)
    assert first is not None and second is not None and first != second
    assert mirror.remember(KEYS, first)
    assert mirror.lookup(KEYS) is None
    publish(redis_client, [(Subject.CONNECTION, "c1", False)])
    assert not mirror.remember(KEYS, second)  # asked Redis before the change: stale
    third = mirror.lookup(KEYS)
    assert third is not None and not mirror.remember(KEYS, first)
    assert mirror.remember(KEYS, third)
    assert mirror.lookup(KEYS) is None


async def test_flushing_redis_forgets_everything(
    mirror: StatusMirror, redis_client: redis.Redis
) -> None:
    mirror.remember(KEYS, mirror.lookup(KEYS))
    assert mirror.lookup(KEYS) is None
    redis_client.flushdb()
    redis_client.ping()  # the flush's invalidation has left Redis (shared/status.py)
    assert mirror.lookup(KEYS) is not None


async def test_answers_expire_after_max_age(settings: Settings, redis_client: redis.Redis
                                            ) -> None:
    mirror = StatusMirror(resolved_redis_url(settings), max_age=0.05)
    try:
        assert await mirror.ensure_connected()
        mirror.remember(KEYS, mirror.lookup(KEYS))
        assert mirror.lookup(KEYS) is None
        time.sleep(0.1)
        assert mirror.lookup(KEYS) is not None
    finally:
        mirror.close()


async def test_a_lost_connection_forgets_everything_and_reconnects_later(
    mirror: StatusMirror, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror.remember(KEYS, mirror.lookup(KEYS))
    assert mirror.lookup(KEYS) is None
    mirror._sock.shutdown(socket.SHUT_RDWR)  # as if Redis had gone away
    assert mirror.lookup(KEYS) is not None
    assert not mirror.connected
    # The next attempt waits for the retry interval; then the mirror is back.
    assert not await mirror.ensure_connected()
    monkeypatch.setattr(mirror, "_next_attempt", 0.0)
    assert await mirror.ensure_connected()
    mirror.remember(KEYS, mirror.lookup(KEYS))
    assert mirror.lookup(KEYS) is None


async def test_an_unreachable_redis_leaves_the_mirror_unused() -> None:
    mirror = StatusMirror("redis://127.0.0.1:1/0")
    assert not await mirror.ensure_connected()
    assert mirror.lookup(KEYS) is not None
    mirror.remember(KEYS, 0)
    assert mirror.lookup(KEYS) is not None


async def test_tls_urls_are_not_mirrored() -> None:
    mirror = StatusMirror("rediss://127.0.0.1:6379/0")
    assert not await mirror.ensure_connected()
