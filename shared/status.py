"""Whether a connection, user, token family or app may still use its tokens.

Resource servers check this on every call (docs/product.md 5.3). Redis holds the answer; a
missing entry (expired, or Redis flushed) is looked up in the database and never read
as "active". Whoever changes a status writes the database first and publishes the new
value here right after the commit, so the very next call sees it on any instance.
A reader that loaded a value from the database only adds it if no writer has published
one meanwhile (SET NX), so a slow reader cannot put back a stale "active".

A connection's cached "active" says nothing about its expiry: a connection past its
`expires_at` stays cached active until the worker's job turns it `expired`. Every use
of a connection's token reads the connection row anyway (shared/policy/resolve.py, the
fast employee read), and that read refuses it from `expires_at` on (`is_live`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import redis
import redis.asyncio as aioredis
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from shared.db.types import utcnow
from shared.models import App, AppStatus, Connection, TokenFamily, User, is_live

ACTIVE = b"1"
INACTIVE = b"0"
# A published value is authoritative until the next change; the TTL only bounds how
# long an entry loaded by a reader lives, in case a writer died before publishing.
CACHE_TTL_S = 300
# Redis sends the status mirrors' invalidations (shared/status_mirror.py) along with the
# replies of the command that caused them, in no set order. Once a later command has
# been answered, they have left Redis: a publisher that waits for one (a PING) knows
# that the other processes' mirrors will see the change before any call it answers next.


# A client's row changed (any column: secret, redirect URIs, scopes, status...): a write
# under this prefix tells every auth process's client cache (services/auth/oauth2/
# client_cache.py) to drop its copy. The value means nothing; the key lives a minute.
CLIENT_PREFIX = "koppel:status:client:"
CLIENT_KEY_TTL_S = 60


class Subject(StrEnum):
    CONNECTION = "conn"
    USER = "user"
    FAMILY = "fam"
    APP = "app"  # keyed by client_id


def status_key(subject: Subject, ident: str | uuid.UUID) -> str:
    return f"koppel:status:{subject.value}:{ident}"


def client_key(client_id: str) -> str:
    return f"{CLIENT_PREFIX}{client_id}"


def _queue(pipe, changes: Iterable[tuple[Subject, str | uuid.UUID, bool]],
           clients: Iterable[str]) -> None:
    for subject, ident, active in changes:
        pipe.set(status_key(subject, ident), ACTIVE if active else INACTIVE, ex=CACHE_TTL_S)
    for client_id in clients:
        pipe.set(client_key(client_id), b"1", ex=CLIENT_KEY_TTL_S)


def publish(client: redis.Redis, changes: Iterable[tuple[Subject, str | uuid.UUID, bool]],
            clients: Iterable[str] = ()) -> None:
    """After a commit: record new statuses, and announce the clients whose rows changed
    (sync code, e.g. the auth service)."""
    pipe = client.pipeline(transaction=False)
    _queue(pipe, changes, clients)
    pipe.execute()
    client.ping()  # the invalidations have been sent (see above)


async def publish_async(
    client: aioredis.Redis, changes: Iterable[tuple[Subject, str | uuid.UUID, bool]],
    clients: Iterable[str] = (),
) -> None:
    """After a commit: record new statuses, and announce the clients whose rows changed
    (async code, e.g. the registry)."""
    pipe = client.pipeline(transaction=False)
    _queue(pipe, changes, clients)
    await pipe.execute()
    await client.ping()  # the invalidations have been sent (see above)


async def _load(session: AsyncSession, subject: Subject, ident: str) -> bool:
    """The authoritative answer from the database."""
    stmt: Select[Any]
    if subject is Subject.CONNECTION:
        live = select(col(Connection.status), col(Connection.expires_at)).where(
            col(Connection.id) == uuid.UUID(ident))
        found = (await session.execute(live)).first()
        return found is not None and is_live(found[0], found[1], utcnow())
    if subject is Subject.USER:
        stmt = select(col(User.active)).where(col(User.id) == uuid.UUID(ident))
        return bool((await session.execute(stmt)).scalar_one_or_none())
    if subject is Subject.FAMILY:
        stmt = select(col(TokenFamily.revoked_at)).where(col(TokenFamily.id) == uuid.UUID(ident))
        row = (await session.execute(stmt)).first()
        return row is not None and row[0] is None
    stmt = select(col(App.status)).where(col(App.client_id) == ident)
    return (await session.execute(stmt)).scalar_one_or_none() == AppStatus.ACTIVE


async def all_active(
    client: aioredis.Redis,
    session_factory,
    subjects: list[tuple[Subject, str]],
) -> bool:
    """Whether every subject is active: one Redis round trip, the database on a miss."""
    keys = [status_key(subject, ident) for subject, ident in subjects]
    values = await client.mget(keys)
    if any(value == INACTIVE for value in values):
        return False
    missing = [s for s, value in zip(subjects, values, strict=True) if value is None]
    if not missing:
        return True
    async with session_factory() as session:
        loaded = [(s, await _load(session, *s)) for s in missing]
    pipe = client.pipeline(transaction=False)
    for (subject, ident), active in loaded:
        pipe.set(
            status_key(subject, ident), ACTIVE if active else INACTIVE, ex=CACHE_TTL_S, nx=True
        )
    await pipe.execute()
    return all(active for _, active in loaded)
