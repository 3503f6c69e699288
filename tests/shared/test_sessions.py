"""Signing a user out everywhere (shared/sessions.py): every login session of the user
goes, others stay; a session from a login made before the sign-out is refused even if
it was stored after it; only first-party token families are revoked."""

from __future__ import annotations

import time
import uuid

from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from shared.models import TokenFamily
from shared.runtime import Runtime
from shared.sessions import (
    drop_session,
    end_user_sessions,
    load_session,
    revoke_first_party_families,
    save_session,
    session_key,
)
from tests.fixtures import factories as f

TTL = 600


async def test_ending_a_users_sessions_leaves_other_users_alone(runtime: Runtime) -> None:
    client, key = runtime.redis, runtime.keyring.digest_key
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    now = time.time()
    for token, user in (("kps_one", mine), ("kps_two", mine), ("kps_three", theirs)):
        await save_session(client, key, token, user, now, TTL)

    await end_user_sessions(client, [mine])

    for token in ("kps_one", "kps_two"):
        assert await load_session(client, key, token) is None
        assert await client.exists(session_key(key, token)) == 0
    assert (await load_session(client, key, "kps_three"))["user_id"] == theirs

    # A login that raced the sign-out (checked before it, stored after) is refused;
    # a login made afterwards works.
    await save_session(client, key, "kps_raced", mine, now, TTL)
    assert await load_session(client, key, "kps_raced") is None
    await save_session(client, key, "kps_new", mine, time.time() + 0.001, TTL)
    assert (await load_session(client, key, "kps_new"))["user_id"] == mine

    # A logout takes the session out of its user's index too.
    await drop_session(client, key, "kps_three")
    assert await load_session(client, key, "kps_three") is None
    assert await client.smembers(f"koppel:user-sessions:{theirs}") == set()


async def test_only_first_party_families_of_the_user_are_revoked(
    runtime: Runtime, committing_sessions: sessionmaker[Session],
) -> None:
    with committing_sessions() as session:
        environment = f.make_environment(session)
        debtor = f.make_debtor(session, environment)
        user, other = (f.make_user(session, environment, debtor=debtor) for _ in range(2))
        first_party = f.make_app(session, first_party=True, environment=environment)
        partner_app = f.make_app(session)
        connection = f.make_connection(session, user, partner_app)
        targets = [f.make_token_family(session, first_party, user) for _ in range(2)]
        kept = [f.make_token_family(session, partner_app, user, connection_id=connection.id),
                f.make_token_family(session, first_party, other)]
        session.commit()

    async with runtime.async_session() as session:
        revoked = await revoke_first_party_families(session, user.id)
        await session.commit()
    assert sorted(revoked) == sorted(t.id for t in targets)

    with committing_sessions() as session:
        assert all(session.get(TokenFamily, t.id).revoked_at is not None for t in targets)
        assert all(session.get(TokenFamily, k.id).revoked_at is None for k in kept)
    async with runtime.async_session() as session:
        assert await revoke_first_party_families(session, user.id) == []
