"""The encrypted columns of the schema, and how to seal and open them.

Every encrypted value is a pair of columns (ciphertext, key id) on a row; the row's
identity is the associated data. Sealing and opening go through here so that the
identity is derived the same way everywhere, and `koppel keys rotate` finds them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlmodel import SQLModel

from shared.models import AttestationKey, IdempotencyKey, SigningKey, WebhookEndpoint
from shared.vault.secretbox import RowIdentity, SecretBox


@dataclass(frozen=True)
class EncryptedColumn:
    model: type[SQLModel]
    name: str
    ciphertext_attr: str
    key_id_attr: str
    pk_attr: str
    environment_attr: str | None = None

    @property
    def table(self) -> str:
        # Every table model names its table with a string; SQLModel's types allow a function.
        return cast(str, self.model.__tablename__)

    def identity(self, row: SQLModel) -> RowIdentity:
        env = getattr(row, self.environment_attr) if self.environment_attr else None
        return RowIdentity(
            self.table, self.name, str(getattr(row, self.pk_attr)), str(env) if env else None
        )

    def seal(self, box: SecretBox, row: SQLModel, plaintext: bytes) -> None:
        """Encrypt `plaintext` into the row (its primary key must already be set)."""
        sealed = box.seal(plaintext, self.identity(row))
        setattr(row, self.ciphertext_attr, sealed.ciphertext)
        setattr(row, self.key_id_attr, sealed.key_id)

    def open(self, box: SecretBox, row: SQLModel) -> bytes:
        """Decrypt the row's value, or raise a VaultError."""
        return box.open(
            getattr(row, self.key_id_attr), getattr(row, self.ciphertext_attr), self.identity(row)
        )


SIGNING_PRIVATE_KEY = EncryptedColumn(
    SigningKey, "private_key", "private_key_ciphertext", "private_key_key_id", "kid"
)

# Every encrypted column; `koppel keys rotate` re-encrypts each of them.
ENCRYPTED_COLUMNS: list[EncryptedColumn] = [SIGNING_PRIVATE_KEY]


def register_encrypted_column(column: EncryptedColumn) -> None:
    """Add a column (from a table model in shared/) to the ones rotation covers."""
    if all(c.table != column.table or c.name != column.name for c in ENCRYPTED_COLUMNS):
        ENCRYPTED_COLUMNS.append(column)


# Webhook signing secrets, bound to their endpoint row and app.
WEBHOOK_SECRET = EncryptedColumn(
    WebhookEndpoint, "secret", "secret_ciphertext", "secret_key_id", "id", "app_id"
)
WEBHOOK_PREVIOUS_SECRET = EncryptedColumn(
    WebhookEndpoint, "previous_secret", "previous_secret_ciphertext", "previous_secret_key_id",
    "id", "app_id",
)
register_encrypted_column(WEBHOOK_SECRET)
register_encrypted_column(WEBHOOK_PREVIOUS_SECRET)

# Attestation keys (shared/attestation.py): sealed like the token signing keys.
ATTESTATION_PRIVATE_KEY = EncryptedColumn(
    AttestationKey, "private_key", "private_key_ciphertext", "private_key_key_id", "kid"
)
register_encrypted_column(ATTESTATION_PRIVATE_KEY)

# Stored answers of idempotent requests (they may carry a secret shown once), bound to
# their row and owner.
IDEMPOTENT_ANSWER = EncryptedColumn(
    IdempotencyKey, "answer", "answer_ciphertext", "answer_key_id", "id", "owner"
)
register_encrypted_column(IDEMPOTENT_ANSWER)

# Ed25519 webhook signing keys (Standard Webhooks `v1a`), bound like the secrets; the
# public half is stored in the clear (`public_key`), the private half only sealed.
WEBHOOK_SIGNING_KEY = EncryptedColumn(
    WebhookEndpoint, "signing_key", "signing_key_ciphertext", "signing_key_key_id", "id",
    "app_id",
)
WEBHOOK_PREVIOUS_SIGNING_KEY = EncryptedColumn(
    WebhookEndpoint, "previous_signing_key", "previous_signing_key_ciphertext",
    "previous_signing_key_key_id", "id", "app_id",
)
register_encrypted_column(WEBHOOK_SIGNING_KEY)
register_encrypted_column(WEBHOOK_PREVIOUS_SIGNING_KEY)
