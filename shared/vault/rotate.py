"""Re-encryption under the active key, in resumable batches.

Each batch is its own transaction and only touches rows still sealed under another key,
so stopping at any point and running again carries on where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from shared.vault.columns import ENCRYPTED_COLUMNS, EncryptedColumn
from shared.vault.secretbox import SecretBox


@dataclass(frozen=True)
class BatchDone:
    column: EncryptedColumn
    rows: int


def pending_rows(session: Session, active_key_id: str) -> int:
    """How many encrypted values are not yet sealed under the active key."""
    total = 0
    for column in ENCRYPTED_COLUMNS:
        key_col = col(getattr(column.model, column.key_id_attr))
        stmt = select(func.count()).select_from(column.model).where(key_col != active_key_id)
        total += session.exec(stmt).one()
    return total


def reencrypt(
    session_factory: Callable[[], Session], box: SecretBox, *, batch_size: int = 500
) -> Iterator[BatchDone]:
    """Re-seal every value under the active key; yields after each committed batch."""
    active = box.ring.active_key_id
    for column in ENCRYPTED_COLUMNS:
        key_col = col(getattr(column.model, column.key_id_attr))
        pk_col = col(getattr(column.model, column.pk_attr))
        while True:
            with session_factory() as session, session.begin():
                stmt = select(column.model).where(key_col != active).order_by(pk_col)
                stmt = stmt.limit(batch_size)
                if session.get_bind().dialect.name == "postgresql":
                    stmt = stmt.with_for_update(skip_locked=True)
                rows = session.exec(stmt).all()
                for row in rows:
                    column.seal(box, row, column.open(box, row))
            if not rows:
                break
            yield BatchDone(column, len(rows))
