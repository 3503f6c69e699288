"""Login sessions in Redis, and signing a user out everywhere.

The auth service starts, reads and ends one browser's session (services/auth/login/sessions.py).
The registry and the command line end every session of a user, and revoke the user's
first-party token families, when the password is set or the user is deactivated: what
was logged in with the old password, or by someone who may no longer log in, stops at
once (the sessions end after the commit: `UnitOfWork.sign_out`).

A session is `koppel:session:<digest of the cookie>`; each user has an index (a Redis
set) of their session keys so that all of them can be deleted together. Signing out
also leaves a marker with the time it happened: a session that started before it (a
login that raced the change, or one finished from a pending request) is refused too.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db.types import utcnow
from shared.models import App, TokenFamily
from shared.vault import token_digest

# Longer than any pending authorization request and any login in flight.
SIGNED_OUT_MARKER_TTL_S = 24 * 3600


def session_key(digest_key: bytes, token: str) -> str:
    return f"koppel:session:{token_digest(digest_key, token)}"


def _index_key(user_id: str | uuid.UUID) -> str:
    return f"koppel:user-sessions:{user_id}"


def _signed_out_key(user_id: str | uuid.UUID) -> str:
    return f"koppel:signed-out:{user_id}"


async def save_session(client: Any, digest_key: bytes, token: str, user_id: str,
                       auth_time: float, ttl: int) -> None:
    """Store a new login session and add it to its user's index."""
    key = session_key(digest_key, token)
    index = _index_key(user_id)
    pipe = client.pipeline(transaction=True)
    pipe.set(key, json.dumps({"user_id": user_id, "auth_time": auth_time}), ex=ttl)
    pipe.sadd(index, key)
    pipe.expire(index, ttl)  # outlives every session it lists: each is at most `ttl`
    await pipe.execute()


async def load_session(client: Any, digest_key: bytes, token: str) -> dict | None:
    """The session record {"user_id", "auth_time"}, unless it is unknown or started
    before its user was signed out everywhere."""
    raw = await client.get(session_key(digest_key, token))
    if raw is None:
        return None
    record = json.loads(raw)
    signed_out = await client.get(_signed_out_key(record["user_id"]))
    if signed_out is not None and float(record["auth_time"]) <= float(signed_out):
        return None
    return record


async def drop_session(client: Any, digest_key: bytes, token: str) -> None:
    """End one session (a logout)."""
    key = session_key(digest_key, token)
    raw = await client.get(key)
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    if raw is not None:
        pipe.srem(_index_key(json.loads(raw)["user_id"]), key)
    await pipe.execute()


async def end_user_sessions(client: Any, user_ids: Iterable[str | uuid.UUID]) -> None:
    """Delete every login session of these users, and refuse any that starts from a
    login made before now."""
    for user_id in user_ids:
        index = _index_key(user_id)
        keys = await client.smembers(index)
        pipe = client.pipeline(transaction=True)
        if keys:
            pipe.delete(*keys)
        pipe.delete(index)
        pipe.set(_signed_out_key(user_id), repr(time.time()), ex=SIGNED_OUT_MARKER_TTL_S)
        await pipe.execute()


async def revoke_first_party_families(session: AsyncSession, user_id: uuid.UUID
                                      ) -> list[uuid.UUID]:
    """Revoke the user's live token families of first-party apps (their refresh tokens
    stop at once; publish each family as inactive after the commit so that resource
    servers refuse its access tokens too). Third-party connections are not touched."""
    stmt = (select(TokenFamily.id).join(App, col(App.id) == TokenFamily.app_id)
            .where(TokenFamily.user_id == user_id, col(App.first_party),
                   col(TokenFamily.revoked_at).is_(None)))
    family_ids = list((await session.exec(stmt)).all())
    if family_ids:
        await session.exec(update(TokenFamily)
                           .where(col(TokenFamily.id).in_(family_ids),
                                  col(TokenFamily.revoked_at).is_(None))
                           .values(revoked_at=utcnow()))
    return family_ids
