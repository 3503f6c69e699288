"""The unit of work: notes made on a session (sync or async) are flushed after the commit,
once; a failed status publication raises, for the owner to answer."""

from __future__ import annotations

import uuid

import pytest
import redis
import redis.asyncio as aioredis
from arq.constants import default_queue_name, job_key_prefix

from shared.db.types import utcnow
from shared.jobs import NUDGES, delivery_job_id
from shared.last_used import PENDING_KEY
from shared.outbox import emit
from shared.runtime import Runtime
from shared.status import Subject, status_key
from shared.unit_of_work import UnitOfWork, unit_of_work


async def test_notes_on_a_session_are_flushed_once(runtime: Runtime,
                                                   redis_client: redis.Redis) -> None:
    connection_id, delivery_id, family_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with runtime.async_session() as session:
        unit_of_work(session).publish_status(Subject.CONNECTION, connection_id, False)
        emit(session, "connection.revoked", uuid.uuid4(), debtor_id=uuid.uuid4(),
             connection_id=connection_id, changed_fields=["status"])
        unit_of_work(session).enqueue_delivery(delivery_id, 2, utcnow())
        unit_of_work(session).record_use(connection_id)
        work = UnitOfWork.detach(session)
        assert UnitOfWork.detach(session) == UnitOfWork()  # taken off the session
    with runtime.session() as sync_session:
        unit_of_work(sync_session).publish_status(Subject.FAMILY, family_id, False)
        work.statuses += UnitOfWork.detach(sync_session).statuses

    await work.flush(runtime.redis)

    assert redis_client.get(status_key(Subject.CONNECTION, connection_id)) == b"0"
    assert redis_client.get(status_key(Subject.FAMILY, family_id)) == b"0"
    assert redis_client.hexists(PENDING_KEY, str(connection_id))
    assert redis_client.lrange(NUDGES, 0, -1) == [b""]  # the relay's nudge (no request)
    assert redis_client.zcard(default_queue_name) == 1  # the attempt
    assert redis_client.exists(job_key_prefix + delivery_job_id(delivery_id, 2))


async def test_a_failed_publication_raises_for_the_owner_to_answer(runtime: Runtime) -> None:
    work = UnitOfWork()
    work.publish_status(Subject.USER, uuid.uuid4(), False)
    work.nudge_relay()
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    try:
        with pytest.raises((aioredis.RedisError, OSError)):
            await work.flush(dead)
    finally:
        await dead.aclose()
