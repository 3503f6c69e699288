"""AES-256-GCM for what must be read back (webhook secrets, signing keys).

Each ciphertext carries the id of the key that sealed it (stored beside it) and is bound
to its row's identity as associated data: moved to another row, table or environment,
it no longer opens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.vault.errors import DecryptionError, UnknownKeyError
from shared.vault.keyring import KeyRing, reload_keyring

NONCE_BYTES = 12


@dataclass(frozen=True)
class RowIdentity:
    """Where a ciphertext lives: table, column, row id and environment (if any)."""

    table: str
    column: str
    row_id: str
    environment_id: str | None = None

    def associated_data(self, key_id: str) -> bytes:
        parts = ["koppel.v1", self.table, self.column, self.row_id, self.environment_id or "-"]
        parts.append(key_id)
        # Length-prefixed, so no two identities encode to the same bytes.
        return b"".join(len(p.encode()).to_bytes(2, "big") + p.encode() for p in parts)


@dataclass(frozen=True)
class Sealed:
    key_id: str
    ciphertext: bytes


class SecretBox:
    """Seals and opens secrets with the key ring's keys."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def _key(self, key_id: str) -> bytes:
        try:
            return self.ring.key(key_id)
        except UnknownKeyError:
            # Another process may have rotated the key file since this one read it: take
            # the new ring (and its active key) rather than fail until a restart.
            fresh = reload_keyring(self.ring)
            if fresh is None or key_id not in fresh.keys:
                raise
            self.ring = fresh
            return fresh.key(key_id)

    def seal(self, plaintext: bytes, identity: RowIdentity) -> Sealed:
        """Encrypt with the active key; returns the key id and nonce + ciphertext + tag."""
        key_id = self.ring.active_key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.ring.active_key).encrypt(
            nonce, plaintext, identity.associated_data(key_id)
        )
        return Sealed(key_id, nonce + sealed)

    def open(self, key_id: str, ciphertext: bytes, identity: RowIdentity) -> bytes:
        """Decrypt, or raise a VaultError if anything about it does not match."""
        key = self._key(key_id)
        if len(ciphertext) < NONCE_BYTES + 16:
            raise DecryptionError("ciphertext too short")
        nonce, body = ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:]
        try:
            return AESGCM(key).decrypt(nonce, body, identity.associated_data(key_id))
        except InvalidTag:
            raise DecryptionError(
                f"ciphertext for {identity.table}.{identity.column} {identity.row_id} does not open"
            ) from None
