"""The worker's side of the data-access log: moving the notes of shared/data_access.py
from Redis to the database in batches, and purging days past the retention.

A flush takes the pending hash by renaming it to `koppel:dataaccess:taking:<batch id>`
and adding the batch id to a set of batches to apply, in one Lua call (notes made
meanwhile land in a new pending hash). For each batch in the set it then, in one
transaction, records the batch id as applied (`data_access_batches`) and adds the
batch's counts to the log with an UPSERT (count +=, first_at the earlier, last_at the
later); then deletes the taking key and the batch id. A flush that stops anywhere loses
nothing and counts nothing twice: before the commit, the batch is still in the set and
the next flush applies it; after the commit, its id is recorded, so the next flush only
deletes it (the insert of the batch row comes first in the transaction: a second flush
applying the same batch at the same time fails on it and rolls back).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
import structlog
from sqlalchemy import case, delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col

from shared.data_access import GENERATION_FIELD, PENDING_KEY, Entry, parse_key
from shared.db.base import table_of
from shared.db.types import utcnow, uuid7
from shared.models import DataAccess, DataAccessBatch, entry_id

log = structlog.get_logger("koppel.data_access")

BATCHES_KEY = "koppel:dataaccess:batches"
UPSERT_ROWS = 500  # rows per statement (SQLite's bound parameters stay well in limits)
# Applied batch ids are kept this long: a flush retries a batch long before.
BATCH_RECORD_DAYS = 7

# KEYS[1] the pending hash, KEYS[2] the set of batches to apply; ARGV[1] a batch id for a
# hash without a generation, ARGV[2] the taking keys' prefix. The batch id is the hash's
# generation (shared/data_access.py), so a hash applied before and brought back by Redis
# meets its batch row. Returns every batch id to apply.
_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  local batch = redis.call('HGET', KEYS[1], 'gen') or ARGV[1]
  local taking = ARGV[2] .. batch
  if redis.call('EXISTS', taking) == 1 then
    batch = ARGV[1]
    taking = ARGV[2] .. batch
  end
  redis.call('RENAME', KEYS[1], taking)
  redis.call('SADD', KEYS[2], batch)
end
return redis.call('SMEMBERS', KEYS[2])
"""
TAKING_PREFIX = "koppel:dataaccess:taking:"

_log = table_of(DataAccess)


def taking_key(batch_id: str) -> str:
    return f"{TAKING_PREFIX}{batch_id}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def take(client: aioredis.Redis) -> list[str]:
    """Take the pending notes as a new batch; returns the ids of every batch to apply
    (the new one, and any that a stopped flush left), oldest first."""
    batch_id = uuid7().hex
    # redis-py types a command of its async client as "awaitable or result".
    ids = await client.eval(_TAKE, 2, PENDING_KEY, BATCHES_KEY,  # type: ignore[misc]
                            batch_id, TAKING_PREFIX)
    return sorted(_text(i) for i in ids)


def _at(raw: str | None) -> datetime | None:
    return None if raw is None else datetime.fromtimestamp(float(raw), UTC)


def entries(fields: dict[Any, Any]) -> list[dict[str, Any]]:
    """The log rows of a batch's hash (fields `c|f|l <key>`), one per entry key."""
    grouped: dict[str, dict[str, str]] = {}
    for raw_field, raw_value in fields.items():
        if _text(raw_field) == GENERATION_FIELD:
            continue
        kind, _, key = _text(raw_field).partition(" ")
        grouped.setdefault(key, {})[kind] = _text(raw_value)
    rows = []
    for key, values in grouped.items():
        try:
            entry: Entry = parse_key(key)
            count = int(values.get("c", "0"))
            first = _at(values.get("f")) or _at(values.get("l"))
            last = _at(values.get("l")) or first
            day = date.fromisoformat(entry.day)
        except ValueError:
            log.warning("data access note skipped: unreadable", key=key[:200])
            continue
        if count <= 0 or first is None or last is None:
            continue
        rows.append({
            "id": entry_id(entry.environment_id, entry.client_id, entry.connection_id,
                           entry.employee_id, entry.scope, entry.action, day,
                           entry.first_party),
            "environment_id": entry.environment_id, "employee_id": entry.employee_id,
            "client_id": entry.client_id, "connection_id": entry.connection_id,
            "first_party": entry.first_party, "scope": entry.scope, "action": entry.action,
            "day": day, "count": count, "first_at": first, "last_at": last,
        })
    return rows


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), UPSERT_ROWS):
        yield rows[start:start + UPSERT_ROWS]


def upsert(dialect: str, rows: list[dict[str, Any]]) -> Any:
    """One INSERT ... ON CONFLICT (id) DO UPDATE adding `rows` to the log."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(_log).values(rows)
    new = stmt.excluded
    return stmt.on_conflict_do_update(index_elements=[_log.c.id], set_={
        "count": _log.c.count + new.count,
        "first_at": case((new.first_at < _log.c.first_at, new.first_at),
                         else_=_log.c.first_at),
        "last_at": case((new.last_at > _log.c.last_at, new.last_at), else_=_log.c.last_at),
    })


async def apply(client: aioredis.Redis, session_factory: async_sessionmaker,
                batch_id: str) -> int:
    """Add the batch's notes to the log in one transaction with its `DataAccessBatch`
    row; returns the rows written (0 if the batch was applied before)."""
    rows = entries(await client.hgetall(taking_key(batch_id)))  # type: ignore[misc]
    async with session_factory() as session:
        try:
            session.add(DataAccessBatch(id=batch_id))
            await session.flush()
        except IntegrityError:
            await session.rollback()
            return 0  # committed by an earlier (or a concurrent) flush
        dialect = session.get_bind().dialect.name
        for chunk in _chunks(rows):
            await session.exec(upsert(dialect, chunk))
        await session.commit()
    return len(rows)


async def forget(client: aioredis.Redis, batch_id: str) -> None:
    """The batch is in the database: delete its notes and its id."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(taking_key(batch_id))
    pipe.srem(BATCHES_KEY, batch_id)
    await pipe.execute()


async def flush(client: aioredis.Redis, session_factory: async_sessionmaker) -> int:
    """Move every noted access to the database; returns the log rows written."""
    written, failed = 0, []
    for batch_id in await take(client):
        try:
            written += await apply(client, session_factory, batch_id)
        except Exception:  # one bad batch must not hold up the others
            log.exception("data access batch not applied; retried next flush",
                          batch=batch_id)
            failed.append(batch_id)
            continue
        await forget(client, batch_id)
    if failed:
        raise RuntimeError(f"{len(failed)} data-access batch(es) not applied: {failed}")
    return written


async def purge(session_factory: async_sessionmaker, retention_days: int,
                today: date | None = None) -> int:
    """Delete the log's days older than `retention_days` before `today` (and applied
    batch ids older than a week); returns the log rows deleted."""
    today = today or utcnow().date()
    oldest = today - timedelta(days=retention_days)
    async with session_factory() as session:
        result = await session.exec(delete(DataAccess).where(col(DataAccess.day) < oldest))
        await session.exec(delete(DataAccessBatch).where(
            col(DataAccessBatch.applied_at) < utcnow() - timedelta(days=BATCH_RECORD_DAYS)))
        await session.commit()
    return result.rowcount or 0
