"""The stored answers (`idempotency_keys`): looking one up, writing one in the request's
transaction, sealed by the vault, and purging the expired."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db.types import utcnow
from shared.idempotency.keys import RETENTION
from shared.models import IdempotencyKey
from shared.vault import SecretBox
from shared.vault.columns import IDEMPOTENT_ANSWER

# The headers of an answer that a replay repeats (others are made anew per request).
KEPT_HEADERS = frozenset({b"content-type", b"location", b"etag", b"last-modified",
                          b"content-location"})


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def kept_headers(self) -> list[tuple[bytes, bytes]]:
        return [(k, v) for k, v in self.headers if k.lower() in KEPT_HEADERS]


async def find(sessions: async_sessionmaker[AsyncSession], owner: str, key: str
               ) -> IdempotencyKey | None:
    """The owner's unexpired answer for `key`, if one was committed."""
    async with sessions() as session:
        row = (await session.exec(select(IdempotencyKey).where(
            IdempotencyKey.owner == owner, IdempotencyKey.key == key))).first()
    if row is None or row.expires_at <= utcnow():
        return None
    return row


def open_answer(box: SecretBox, row: IdempotencyKey) -> Answer:
    """The stored answer, unsealed."""
    document = json.loads(IDEMPOTENT_ANSWER.open(box, row))
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in document["headers"]]
    return Answer(row.status_code, headers, base64.b64decode(document["body"]))


async def keep(session: AsyncSession, box: SecretBox, *, owner: str, key: str,
               fingerprint: str, answer: Answer) -> None:
    """Add the answer to the request's transaction (an expired one of the same key makes
    way); it is committed with the work or not at all."""
    now = utcnow()
    await session.exec(delete(IdempotencyKey).where(
        col(IdempotencyKey.owner) == owner, col(IdempotencyKey.key) == key,
        col(IdempotencyKey.expires_at) <= now))
    row = IdempotencyKey(owner=owner, key=key, fingerprint=fingerprint,
                         status_code=answer.status, answer_ciphertext=b"", answer_key_id="",
                         created_at=now, expires_at=now + RETENTION)
    document = {"headers": [[k.decode("latin-1"), v.decode("latin-1")]
                            for k, v in answer.kept_headers()],
                "body": base64.b64encode(answer.body).decode()}
    IDEMPOTENT_ANSWER.seal(box, row, json.dumps(document).encode())
    session.add(row)


async def forget(sessions: async_sessionmaker[AsyncSession], owner: str, key: str) -> None:
    """Drop a stored answer (its work's follow-up could not be published: a retry must
    run the call again)."""
    async with sessions() as session, session.begin():
        await session.exec(delete(IdempotencyKey).where(
            col(IdempotencyKey.owner) == owner, col(IdempotencyKey.key) == key))


async def purge_expired(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Delete the expired answers; returns how many."""
    async with sessions() as session, session.begin():
        result = await session.exec(delete(IdempotencyKey).where(
            col(IdempotencyKey.expires_at) <= utcnow()))
    return result.rowcount or 0
