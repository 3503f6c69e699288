"""Migration 0011's data step: intact plain-SHA-256 audit chains are re-chained with the
MAC under the key ring's active key; an already broken chain is left unkeyed, so
`koppel audit verify` still reports it (never laundered)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlmodel import Session

from shared.audit import GENESIS, canonical_content, verify_environment
from shared.db.engine import create_sync_engine
from shared.db.types import UTCDateTime
from shared.models import AuditEvent
from shared.vault import KeyRing
from tests.fixtures.database import alembic_config, fresh_database, migrate
from tests.fixtures.legacy_audit import legacy_hash

NOW = datetime(2026, 11, 1, tzinfo=UTC)
EVENTS = sa.table(
    "audit_events",
    sa.column("id", sa.Uuid()), sa.column("environment_id", sa.Uuid()),
    sa.column("seq", sa.Integer()), sa.column("action", sa.String()),
    sa.column("actor_type", sa.String()), sa.column("actor_id", sa.String()),
    sa.column("subject_type", sa.String()), sa.column("subject_id", sa.String()),
    sa.column("details", sa.JSON()), sa.column("created_at", UTCDateTime(timezone=True)),
    sa.column("prev_hash", sa.String()), sa.column("hash", sa.String()),
)
HEADS = sa.table("audit_heads", sa.column("environment_id", sa.Uuid()),
                 sa.column("seq", sa.Integer()), sa.column("hash", sa.String()))
ENVIRONMENTS = sa.table("environments", sa.column("id", sa.Uuid()), sa.column("name", sa.String()),
                        sa.column("created_at", UTCDateTime(timezone=True)),
                        sa.column("updated_at", UTCDateTime(timezone=True)))


@pytest.fixture
def url_at_0010(tmp_path: Path) -> Iterator[str]:
    with fresh_database(tmp_path) as url:
        migrate(url, "0010")
        yield url


def _old_chain(conn: sa.Connection, n: int, *, tamper: bool = False) -> uuid.UUID:
    """An environment with `n` events chained by the old rule (plain SHA-256)."""
    environment_id = uuid.uuid4()
    conn.execute(ENVIRONMENTS.insert().values(id=environment_id, name="env", created_at=NOW,
                                              updated_at=NOW))
    prev = GENESIS
    for seq in range(1, n + 1):
        event = AuditEvent(environment_id=environment_id, seq=seq, action="consent.granted",
                           actor_type="user", actor_id="u", subject_type="connection",
                           subject_id=str(seq), details={"n": seq}, created_at=NOW,
                           prev_hash=prev, hash="")
        event.hash = legacy_hash(prev, canonical_content(event))
        row = event.model_dump(exclude={"mac_key_id"})
        if tamper and seq == 1:
            row["details"] = {"n": 99}  # edited after it was hashed
        conn.execute(EVENTS.insert().values(**row))
        prev = event.hash
    conn.execute(HEADS.insert().values(environment_id=environment_id, seq=n, hash=prev))
    return environment_id


def test_intact_chains_are_rechained_and_broken_ones_stay_reported(
    url_at_0010: str, keyring: KeyRing, capfd: pytest.CaptureFixture[str],
) -> None:
    engine = create_sync_engine(url_at_0010)
    try:
        with engine.begin() as conn:
            intact = _old_chain(conn, 3)
            broken = _old_chain(conn, 2, tamper=True)
        config = alembic_config(url_at_0010)
        config.attributes["keyring"] = keyring
        command.upgrade(config, "0011")

        err = capfd.readouterr().err
        assert f"environment {intact}: 3 audit event(s) re-chained" in err
        assert f"environment {broken}: its audit chain was already broken" in err
        with Session(engine) as session:
            assert verify_environment(session, intact, keyring) == []
            faults = verify_environment(session, broken, keyring)
            assert [f.seq for f in faults] == [1, 2]
            assert all("has no MAC" in f.problem for f in faults)
            key_ids = session.exec(sa.select(AuditEvent.mac_key_id).where(  # type: ignore[call-overload]
                AuditEvent.environment_id == intact)).scalars().all()
        assert key_ids == [keyring.active_key_id] * 3
    finally:
        engine.dispose()
