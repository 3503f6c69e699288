"""Encrypted columns in the real database: bound to their row."""

import pytest
from sqlalchemy import text
from sqlmodel import Session

from shared.models import SigningKey
from shared.vault import DecryptionError, KeyRing, SecretBox
from shared.vault.columns import SIGNING_PRIVATE_KEY
from tests.fixtures.factories import make_signing_key


def _reload(session: Session, kid: str) -> SigningKey:
    session.expire_all()
    return session.get(SigningKey, kid)


def test_a_sealed_column_opens_after_a_round_trip_through_the_database(
    db_session: Session, keyring: KeyRing
) -> None:
    box = SecretBox(keyring)
    row = make_signing_key(db_session, box, private_key=b"the private key")
    stored = _reload(db_session, row.kid)
    assert stored.private_key_key_id == keyring.active_key_id
    assert b"the private key" not in stored.private_key_ciphertext
    assert SIGNING_PRIVATE_KEY.open(box, stored) == b"the private key"


def test_a_ciphertext_copied_to_another_row_does_not_open(
    db_session: Session, keyring: KeyRing
) -> None:
    box = SecretBox(keyring)
    source = make_signing_key(db_session, box, private_key=b"key of row a")
    target = make_signing_key(db_session, box, private_key=b"key of row b")
    db_session.execute(
        text(
            "UPDATE signing_keys SET private_key_ciphertext = "
            "(SELECT private_key_ciphertext FROM signing_keys WHERE kid = :source) "
            "WHERE kid = :target"
        ),
        {"source": source.kid, "target": target.kid},
    )
    moved = _reload(db_session, target.kid)
    assert moved.private_key_key_id == source.private_key_key_id
    assert moved.private_key_ciphertext == _reload(db_session, source.kid).private_key_ciphertext
    with pytest.raises(DecryptionError):
        SIGNING_PRIVATE_KEY.open(box, moved)
    assert SIGNING_PRIVATE_KEY.open(box, _reload(db_session, source.kid)) == b"key of row a"
