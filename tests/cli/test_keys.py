"""`koppel keys rotate`: a new active key, and every sealed value re-encrypted under it."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from pathlib import Path

import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, delete

from shared.config import Settings
from shared.models import SigningKey
from shared.vault import KeyRing, SecretBox, load_keyring
from shared.vault.columns import SIGNING_PRIVATE_KEY
from tests.cli.conftest import Invoke
from tests.fixtures.factories import make_signing_key


def _sealed_row(sessions: sessionmaker[Session], ring: KeyRing, plaintext: bytes) -> str:
    with sessions() as session, session.begin():
        return make_signing_key(session, SecretBox(ring), private_key=plaintext).kid


def _reopen(sessions: sessionmaker[Session], ring: KeyRing, kid: str) -> tuple[str, bytes]:
    with sessions() as session:
        row = session.get(SigningKey, kid)
        assert row is not None
        return row.private_key_key_id, SIGNING_PRIVATE_KEY.open(SecretBox(ring), row)


@pytest.fixture
def own_key_file(
    settings: Settings, keyring: KeyRing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    invoke: Invoke,
) -> Settings:
    """A copy of the run's key file that this test may rotate (others keep theirs)."""
    var = tmp_path / "var"
    var.mkdir()
    shutil.copy(settings.key_file, var / "keys.json")
    monkeypatch.setenv("KOPPEL_VAR_DIR", str(var))
    return settings.model_copy(update={"var_dir": var})


def test_rotate_adds_a_key_to_the_file_and_reencrypts_in_batches(
    invoke: Invoke, own_key_file: Settings, committing_sessions: sessionmaker[Session]
) -> None:
    before = load_keyring(own_key_file)
    kids = [_sealed_row(committing_sessions, before, f"secret {i}".encode()) for i in range(3)]

    result = invoke("keys", "rotate", "--json", "--batch-size", "2")

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    after = load_keyring(own_key_file)
    assert document["active_key_id"] == after.active_key_id != before.active_key_id
    assert set(before.keys) < set(after.keys)
    assert document["reencrypted"] >= 3
    for i, kid in enumerate(kids):
        expected = (after.active_key_id, f"secret {i}".encode())
        assert _reopen(committing_sessions, after, kid) == expected

    resumed = invoke("keys", "rotate", "--json", "--resume")
    assert json.loads(resumed.stdout) == {"active_key_id": after.active_key_id, "reencrypted": 0}


def test_configured_keys_are_used_as_configured(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch, committing_sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    keys = {kid: base64.b64encode(secrets.token_bytes(32)).decode() for kid in ("old", "new")}
    digest = base64.b64encode(secrets.token_bytes(32)).decode()
    monkeypatch.setenv("KOPPEL_VAR_DIR", str(tmp_path / "unused-var"))
    monkeypatch.setenv("KOPPEL_KEYS", json.dumps(keys))
    monkeypatch.setenv("KOPPEL_ACTIVE_KEY_ID", "new")
    monkeypatch.setenv("KOPPEL_DIGEST_KEY", digest)
    raw = {kid: base64.b64decode(value) for kid, value in keys.items()}
    old_ring = KeyRing(raw, "old", base64.b64decode(digest))
    # The run's signing keys are sealed under a key this key ring does not hold.
    with committing_sessions() as session, session.begin():
        session.exec(delete(SigningKey))
    kid = _sealed_row(committing_sessions, old_ring, b"private key")

    result = invoke("keys", "rotate", "--json")

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["active_key_id"] == "new"
    assert _reopen(committing_sessions, KeyRing(raw, "new", old_ring.digest_key), kid) == (
        "new", b"private key",
    )
    assert not (tmp_path / "unused-var").exists()


def test_signing_rotation_adds_active_keys_and_retires_the_old_ones(
    invoke: Invoke, committing_sessions: sessionmaker[Session]
) -> None:
    first = invoke("keys", "rotate", "--signing", "--json")
    assert first.exit_code == 0, first.stderr
    old_kids = set(json.loads(first.stdout)["new_signing_keys"])

    second = json.loads(invoke("keys", "rotate", "--signing", "--json").stdout)

    new_kids = set(second["new_signing_keys"])
    assert new_kids and not new_kids & old_kids
    with committing_sessions() as session:
        rows = {kid: session.get(SigningKey, kid) for kid in old_kids | new_kids}
    assert all(rows[kid].active for kid in new_kids)
    assert not any(rows[kid].active for kid in old_kids)
    assert all(rows[kid].publish_until is not None for kid in old_kids)
