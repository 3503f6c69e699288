"""A running process picks up a key that another process rotated into the key file."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.vault import RowIdentity, SecretBox, UnknownKeyError, add_key_to_file, load_keyring


def test_box_reads_a_key_rotated_in_by_another_process(tmp_path) -> None:
    settings = Settings(var_dir=tmp_path)
    running = SecretBox(load_keyring(settings))  # a service that started before the rotation
    rotator = SecretBox(add_key_to_file(load_keyring(settings)))  # `koppel keys rotate`
    identity = RowIdentity("signing_keys", "private_key", "kid-1")
    sealed = rotator.seal(b"private key", identity)

    assert sealed.key_id != running.ring.active_key_id
    assert running.open(sealed.key_id, sealed.ciphertext, identity) == b"private key"
    # From then on it seals with the new active key too.
    assert running.seal(b"x", identity).key_id == sealed.key_id


def test_unknown_key_id_still_fails_cleanly(tmp_path) -> None:
    box = SecretBox(load_keyring(Settings(var_dir=tmp_path)))
    identity = RowIdentity("signing_keys", "private_key", "kid-1")
    sealed = box.seal(b"secret", identity)
    with pytest.raises(UnknownKeyError):
        box.open("no-such-key", sealed.ciphertext, identity)
