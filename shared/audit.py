"""The audit log: append-only, hash-chained per environment.

An append locks the environment's chain head (FOR UPDATE on PostgreSQL; SQLite's
BEGIN IMMEDIATE already serialises writers), so events get gapless sequence numbers and
each one's hash covers the previous hash and its own content.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db.types import utcnow
from shared.models import AuditEvent, AuditHead

GENESIS = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who did it: a user, an app, an operator (command line) or the system."""

    type: str
    id: str | None = None


def event_hash(prev_hash: str, event: AuditEvent) -> str:
    """SHA-256 over the previous hash and the event's content in canonical JSON."""
    content = {
        "id": str(event.id),
        "environment_id": str(event.environment_id),
        "seq": event.seq,
        "action": event.action,
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "details": event.details,
        "created_at": event.created_at.isoformat(),
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def _link(
    head: AuditHead | None,
    environment_id: uuid.UUID,
    action: str,
    actor: Actor,
    subject_type: str,
    subject_id: Any,
    details: dict[str, Any],
) -> tuple[AuditEvent, AuditHead]:
    prev_hash = head.hash if head else GENESIS
    seq = (head.seq if head else 0) + 1
    event = AuditEvent(
        environment_id=environment_id,
        seq=seq,
        action=action,
        actor_type=actor.type,
        actor_id=actor.id,
        subject_type=subject_type,
        subject_id=str(subject_id) if subject_id is not None else None,
        details=details,
        created_at=utcnow(),
        prev_hash=prev_hash,
        hash="",
    )
    event.hash = event_hash(prev_hash, event)
    head = head or AuditHead(environment_id=environment_id, hash=GENESIS)
    head.seq, head.hash = seq, event.hash
    return event, head


def _head_query(environment_id: uuid.UUID, dialect: str):
    stmt = select(AuditHead).where(AuditHead.environment_id == environment_id)
    return stmt.with_for_update() if dialect == "postgresql" else stmt


def _ensure_head(environment_id: uuid.UUID):
    """PostgreSQL: make sure the head row exists before it is locked.

    FOR UPDATE locks nothing while an environment has no head yet, so two first appends
    would both insert one and the second would fail on the primary key. Inserting the
    empty head with ON CONFLICT DO NOTHING makes the second wait for the first's commit.
    """
    return (
        pg_insert(AuditHead)
        .values(environment_id=environment_id, seq=0, hash=GENESIS)
        .on_conflict_do_nothing(index_elements=["environment_id"])
    )


def append(
    session: Session,
    environment_id: uuid.UUID,
    action: str,
    actor: Actor,
    subject_type: str,
    subject_id: Any = None,
    **details: Any,
) -> AuditEvent:
    """Append an event in the session's transaction (sync code)."""
    dialect = session.get_bind().dialect.name
    head = session.exec(_head_query(environment_id, dialect)).first()
    if head is None and dialect == "postgresql":  # the environment's first event
        session.execute(_ensure_head(environment_id))
        head = session.exec(_head_query(environment_id, dialect)).first()
    event, head = _link(head, environment_id, action, actor, subject_type, subject_id, details)
    session.add(head)
    session.add(event)
    return event


async def append_async(
    session: AsyncSession,
    environment_id: uuid.UUID,
    action: str,
    actor: Actor,
    subject_type: str,
    subject_id: Any = None,
    **details: Any,
) -> AuditEvent:
    """Append an event in the session's transaction (async code)."""
    dialect = session.get_bind().dialect.name
    head = (await session.exec(_head_query(environment_id, dialect))).first()
    if head is None and dialect == "postgresql":  # the environment's first event
        await session.execute(_ensure_head(environment_id))
        head = (await session.exec(_head_query(environment_id, dialect))).first()
    event, head = _link(head, environment_id, action, actor, subject_type, subject_id, details)
    session.add(head)
    session.add(event)
    return event


@dataclass(frozen=True)
class ChainFault:
    environment_id: uuid.UUID
    seq: int
    problem: str


def verify_chain(events: Iterable[AuditEvent], head: AuditHead | None) -> list[ChainFault]:
    """Faults in one environment's chain (events in seq order): edits, gaps, a cut tail."""
    faults: list[ChainFault] = []
    prev_hash, expected_seq, env = GENESIS, 1, None
    for event in events:
        env = event.environment_id
        if event.seq != expected_seq:
            faults.append(ChainFault(env, expected_seq, f"missing event(s) before seq {event.seq}"))
        if event.prev_hash != prev_hash:
            faults.append(ChainFault(env, event.seq, "does not follow the event before it"))
        if event_hash(event.prev_hash, event) != event.hash:
            faults.append(ChainFault(env, event.seq, "content does not match its hash"))
        prev_hash, expected_seq = event.hash, event.seq + 1
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev_hash):
        faults.append(
            ChainFault(head.environment_id, head.seq, "events after the last one are missing")
        )
    return faults


def verify_environment(session: Session, environment_id: uuid.UUID) -> list[ChainFault]:
    """Check one environment's whole chain (sync; streams in seq order)."""
    events = session.exec(
        select(AuditEvent)
        .where(AuditEvent.environment_id == environment_id)
        .order_by(col(AuditEvent.seq))
        .execution_options(yield_per=1000)
    )
    head = session.get(AuditHead, environment_id)
    return verify_chain(events, head)
