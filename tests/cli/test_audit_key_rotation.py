"""The audit chain across `koppel keys rotate` (issue 14, finding 1): each event names the
key ring key its MAC was made with, so the whole chain still verifies after a rotation,
and checkpoints signed by a retired attestation key stay verifiable."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from shared.audit import Actor, append
from shared.config import Settings
from shared.models import AttestationKey, AuditEvent
from shared.vault import load_keyring
from tests.cli.conftest import Invoke
from tests.cli.test_keys import own_key_file  # noqa: F401 - fixture
from tests.fixtures.factories import make_environment


def _append(sessions: sessionmaker[Session], environment_id: uuid.UUID) -> None:
    with sessions() as session:
        for _ in range(2):
            append(session, environment_id, "user.updated", Actor("operator"), "user")
        session.commit()


def _checkpoint(invoke: Invoke, kept: Path) -> None:
    result = invoke("audit", "checkpoint")
    assert result.exit_code == 0, result.output
    with kept.open("a") as handle:
        handle.write(result.stdout)


def test_the_chain_and_its_checkpoints_verify_across_key_rotations(
    invoke: Invoke, own_key_file: Settings,  # noqa: F811
    committing_sessions: sessionmaker[Session], tmp_path: Path,
) -> None:
    before = load_keyring(own_key_file)
    with committing_sessions() as session:
        environment_id = make_environment(session).id
        session.commit()
    kept = tmp_path / "kept.txt"
    _append(committing_sessions, environment_id)
    _checkpoint(invoke, kept)

    assert invoke("keys", "rotate").exit_code == 0
    assert invoke("keys", "rotate", "--attestation").exit_code == 0
    after = load_keyring(own_key_file)
    assert after.active_key_id != before.active_key_id
    _append(committing_sessions, environment_id)  # chained under the new active key
    _checkpoint(invoke, kept)

    with committing_sessions() as session:
        key_ids = session.exec(select(AuditEvent.mac_key_id).where(
            AuditEvent.environment_id == environment_id).order_by(col(AuditEvent.seq))).all()
        attestation = session.exec(select(AttestationKey).order_by(
            col(AttestationKey.created_at))).all()
    assert key_ids == [before.active_key_id] * 2 + [after.active_key_id] * 2
    assert [k.active for k in attestation] == [False, True]
    assert len(kept.read_text().split()) == 2

    result = invoke("audit", "verify", "--json", "--checkpoints", str(kept))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"environments": 1, "events": 4, "checkpoints": 2,
                                         "ok": True, "faults": []}
