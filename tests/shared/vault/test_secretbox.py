import secrets

import pytest

from shared.vault import (
    DecryptionError,
    KeyRing,
    RowIdentity,
    SecretBox,
    UnknownKeyError,
    VaultError,
)

IDENTITY = RowIdentity("webhook_endpoints", "secret", "0190-row-1", "env-1")
SECRET = b"whsec_the secret to keep"


def _ring(*key_ids: str, active: str | None = None) -> KeyRing:
    keys = {kid: secrets.token_bytes(32) for kid in key_ids}
    return KeyRing(keys, active or key_ids[0], secrets.token_bytes(32))


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(_ring("k1", "k2"))


def _flip(data: bytes, index: int) -> bytes:
    flipped = bytearray(data)
    flipped[index] ^= 0x01
    return bytes(flipped)


def test_round_trip(box: SecretBox) -> None:
    sealed = box.seal(SECRET, IDENTITY)
    assert sealed.key_id == "k1"
    assert SECRET not in sealed.ciphertext
    assert box.open(sealed.key_id, sealed.ciphertext, IDENTITY) == SECRET


def test_each_seal_uses_a_fresh_nonce(box: SecretBox) -> None:
    assert box.seal(SECRET, IDENTITY).ciphertext != box.seal(SECRET, IDENTITY).ciphertext


@pytest.mark.parametrize(
    "index",
    [0, 11, 12, -17, -16, -1],
    ids=["nonce", "nonce-end", "body", "body-end", "tag", "tag-end"],
)
def test_a_flipped_byte_fails_cleanly(box: SecretBox, index: int) -> None:
    sealed = box.seal(SECRET, IDENTITY)
    with pytest.raises(DecryptionError):
        box.open(sealed.key_id, _flip(sealed.ciphertext, index), IDENTITY)


@pytest.mark.parametrize("cut", [1, 16, 28])
def test_a_truncated_ciphertext_fails_cleanly(box: SecretBox, cut: int) -> None:
    sealed = box.seal(SECRET, IDENTITY)
    with pytest.raises(DecryptionError):
        box.open(sealed.key_id, sealed.ciphertext[:-cut], IDENTITY)


def test_an_unknown_key_id_fails_cleanly(box: SecretBox) -> None:
    sealed = box.seal(SECRET, IDENTITY)
    with pytest.raises(UnknownKeyError):
        box.open("k-gone", sealed.ciphertext, IDENTITY)


def test_another_known_key_id_fails_cleanly(box: SecretBox) -> None:
    sealed = box.seal(SECRET, IDENTITY)
    with pytest.raises(DecryptionError):
        box.open("k2", sealed.ciphertext, IDENTITY)


def test_another_ring_with_the_same_key_id_fails_cleanly(box: SecretBox) -> None:
    sealed = box.seal(SECRET, IDENTITY)
    with pytest.raises(DecryptionError):
        SecretBox(_ring("k1")).open("k1", sealed.ciphertext, IDENTITY)


@pytest.mark.parametrize(
    "other",
    [
        RowIdentity("signing_keys", "secret", "0190-row-1", "env-1"),
        RowIdentity("webhook_endpoints", "old_secret", "0190-row-1", "env-1"),
        RowIdentity("webhook_endpoints", "secret", "0190-row-2", "env-1"),
        RowIdentity("webhook_endpoints", "secret", "0190-row-1", "env-2"),
        RowIdentity("webhook_endpoints", "secret", "0190-row-1", None),
    ],
    ids=["table", "column", "row-id", "environment", "no-environment"],
)
def test_changed_associated_data_fails_cleanly(box: SecretBox, other: RowIdentity) -> None:
    sealed = box.seal(SECRET, IDENTITY)
    with pytest.raises(DecryptionError):
        box.open(sealed.key_id, sealed.ciphertext, other)


def test_identities_that_concatenate_alike_stay_apart() -> None:
    a = RowIdentity("ab", "c", "1")
    b = RowIdentity("a", "bc", "1")
    assert a.associated_data("k1") != b.associated_data("k1")


def test_every_failure_is_a_vault_error() -> None:
    assert issubclass(DecryptionError, VaultError)
    assert issubclass(UnknownKeyError, VaultError)
