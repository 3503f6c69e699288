"""`koppel keys rotate`: re-encryption under a new key, in resumable batches."""

from collections.abc import Callable
from pathlib import Path

from sqlmodel import Session, delete, select

from shared.config import Settings
from shared.models import SigningKey
from shared.vault import KeyRing, SecretBox, add_key_to_file, load_keyring
from shared.vault.columns import SIGNING_PRIVATE_KEY
from shared.vault.rotate import pending_rows, reencrypt
from tests.fixtures.factories import make_signing_key


def _rings(tmp_path: Path) -> tuple[KeyRing, KeyRing]:
    settings = Settings(_env_file=None, env="test", var_dir=tmp_path)
    old = load_keyring(settings)
    return old, add_key_to_file(old)


def _seal_rows(session: Session, box: SecretBox, count: int) -> dict[str, bytes]:
    # Only this test's rows (the deletion is rolled back with the test's transaction).
    session.exec(delete(SigningKey))
    secrets_by_kid = {}
    for number in range(count):
        row = make_signing_key(session, box, private_key=f"private key {number}".encode())
        secrets_by_kid[row.kid] = f"private key {number}".encode()
    session.commit()
    return secrets_by_kid


def _rows(session: Session) -> list[SigningKey]:
    session.expire_all()
    return list(session.exec(select(SigningKey)).all())


def test_rotation_reseals_every_row_under_the_new_key(
    tmp_path: Path, db_session_factory: Callable[[], Session]
) -> None:
    old_ring = load_keyring(Settings(_env_file=None, env="test", var_dir=tmp_path))
    session = db_session_factory()
    expected = _seal_rows(session, SecretBox(old_ring), 5)
    new_ring = add_key_to_file(old_ring)
    new_box = SecretBox(load_keyring(Settings(_env_file=None, env="test", var_dir=tmp_path)))
    assert new_box.ring == new_ring
    assert pending_rows(session, new_ring.active_key_id) == 5

    batches = list(reencrypt(db_session_factory, new_box, batch_size=2))

    assert [batch.rows for batch in batches] == [2, 2, 1]
    assert {batch.column for batch in batches} == {SIGNING_PRIVATE_KEY}
    rows = _rows(session)
    assert {row.private_key_key_id for row in rows} == {new_ring.active_key_id}
    assert {row.kid: SIGNING_PRIVATE_KEY.open(new_box, row) for row in rows} == expected
    assert pending_rows(session, new_ring.active_key_id) == 0


def test_the_old_key_stays_readable_after_rotation(
    tmp_path: Path, db_session: Session
) -> None:
    old_ring, new_ring = _rings(tmp_path)
    db_session.exec(delete(SigningKey))
    row = make_signing_key(db_session, SecretBox(old_ring), private_key=b"sealed before")
    assert row.private_key_key_id == old_ring.active_key_id
    assert SIGNING_PRIVATE_KEY.open(SecretBox(new_ring), row) == b"sealed before"
    assert pending_rows(db_session, new_ring.active_key_id) == 1
    assert pending_rows(db_session, old_ring.active_key_id) == 0


def test_rotation_stopped_after_a_batch_resumes_where_it_stopped(
    tmp_path: Path, db_session_factory: Callable[[], Session]
) -> None:
    old_ring, new_ring = _rings(tmp_path)
    session = db_session_factory()
    expected = _seal_rows(session, SecretBox(old_ring), 5)
    new_box = SecretBox(new_ring)

    for first in reencrypt(db_session_factory, new_box, batch_size=2):
        assert first.rows == 2
        break
    assert pending_rows(session, new_ring.active_key_id) == 3

    resumed = [batch.rows for batch in reencrypt(db_session_factory, new_box, batch_size=2)]

    assert resumed == [2, 1]
    assert pending_rows(session, new_ring.active_key_id) == 0
    assert {row.kid: SIGNING_PRIVATE_KEY.open(new_box, row) for row in _rows(session)} == expected
    assert list(reencrypt(db_session_factory, new_box, batch_size=2)) == []
