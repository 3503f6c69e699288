"""Signed audit checkpoints: an environment's chain head as a compact JWS under the
attestation key (shared/attestation.py).

A checkpoint states "at `iat`, environment `environment_id`'s chain had `seq` events and
its last link was `hash`". The MAC chain shows an edited event; only a statement kept
outside the database shows a cut tail or a chain deleted with its head. Checkpoints are
made by the worker at a fixed interval (for every chain that moved since its last one)
and by `koppel audit checkpoint`; each is stored in `audit_checkpoints`, written to the
structured log and listed to the environment's accountant, who can keep copies.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from joserfc import jws
from sqlalchemy import func
from sqlmodel import Session, col, select

from shared.attestation import sign_attestation
from shared.audit import event_hash
from shared.db.types import utcnow
from shared.models import AuditCheckpoint, AuditEvent, AuditHead
from shared.vault import KeyRing, SecretBox, VaultError

CHECKPOINT_TYP = "audit-checkpoint+jwt"

log = structlog.get_logger("koppel.audit")


class HeadNotSound(RuntimeError):
    """The head does not match a verifying last event: nothing is signed for it."""


def _check_head(session: Session, head: AuditHead, box: SecretBox) -> None:
    """Refuse to vouch for a head that its own last event does not back."""
    last = session.exec(select(AuditEvent).where(
        AuditEvent.environment_id == head.environment_id, AuditEvent.seq == head.seq)).first()
    try:
        sound = (last is not None and last.hash == head.hash
                 and event_hash(last.prev_hash, last, box.ring) == last.hash)
    except (VaultError, ValueError):
        sound = False
    if not sound:
        raise HeadNotSound(f"environment {head.environment_id}: the chain head at seq "
                           f"{head.seq} is not backed by a verifying event")


def make_checkpoint(session: Session, keys: KeyRing | SecretBox, environment_id: uuid.UUID,
                    *, logger: Any = None) -> AuditCheckpoint | None:
    """Sign the environment's current chain head (None: it has no chain yet), store it
    and write it to the structured log (`logger`, default the process's own)."""
    box = keys if isinstance(keys, SecretBox) else SecretBox(keys)
    head = session.get(AuditHead, environment_id)
    if head is None or head.seq == 0:
        return None
    _check_head(session, head, box)
    claims = {"environment_id": str(environment_id), "seq": head.seq, "hash": head.hash,
              "iat": int(time.time())}
    token = sign_attestation(session, box, CHECKPOINT_TYP, claims)
    kid = _kid(token)
    row = AuditCheckpoint(environment_id=environment_id, seq=head.seq, hash=head.hash,
                          kid=kid, jws=token)
    session.add(row)
    session.flush()
    (logger or log).info("audit checkpoint", environment_id=str(environment_id),
                         seq=head.seq, hash=head.hash, kid=kid, jws=token)
    return row


def _kid(token: str) -> str:
    return str(jws.extract_compact(token.encode()).headers()["kid"])


def latest_checkpoints(session: Session) -> dict[uuid.UUID, AuditCheckpoint]:
    """Each environment's newest checkpoint (ids are time-ordered)."""
    # PostgreSQL has no max() over uuid: rank each environment's checkpoints instead.
    rank = func.row_number().over(partition_by=col(AuditCheckpoint.environment_id),
                                  order_by=col(AuditCheckpoint.id).desc()).label("rank")
    ranked = select(col(AuditCheckpoint.id), rank).subquery()
    rows = session.exec(select(AuditCheckpoint).join(ranked, col(AuditCheckpoint.id) == ranked.c.id)
                        .where(ranked.c.rank == 1)).all()
    return {row.environment_id: row for row in rows}


def due_environments(session: Session, interval: timedelta,
                     now: datetime | None = None) -> list[uuid.UUID]:
    """Chains that moved since their newest checkpoint, and whose newest checkpoint is
    older than `interval` (or that have none)."""
    now = now or utcnow()
    latest = latest_checkpoints(session)
    due = []
    for head in session.exec(select(AuditHead).where(AuditHead.seq > 0)).all():
        last = latest.get(head.environment_id)
        if last is None or (
            (last.seq, last.hash) != (head.seq, head.hash) and last.created_at <= now - interval
        ):
            due.append(head.environment_id)
    return sorted(due)


def checkpoint_due(session_factory: Callable[[], Session], keys: KeyRing | SecretBox,
                   interval: timedelta) -> int:
    """The periodic job's work: a checkpoint for every due chain, each in its own
    transaction; a chain whose head is not sound is logged and skipped. Returns how many
    were made."""
    with session_factory() as session:
        environment_ids = due_environments(session, interval)
    made = 0
    for environment_id in environment_ids:
        try:
            with session_factory() as session, session.begin():
                made += make_checkpoint(session, keys, environment_id) is not None
        except HeadNotSound as exc:
            log.error("audit chain head not checkpointed", problem=str(exc))
    return made
