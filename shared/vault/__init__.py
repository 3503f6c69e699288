"""The shared encrypted token storage (docs/product.md section 6)."""

from shared.vault.errors import DecryptionError, UnknownKeyError, VaultError
from shared.vault.keyring import KeyRing, add_key_to_file, load_keyring
from shared.vault.secretbox import RowIdentity, Sealed, SecretBox
from shared.vault.tokens import TokenKind, digest_matches, new_token, token_digest

__all__ = [
    "DecryptionError",
    "KeyRing",
    "RowIdentity",
    "Sealed",
    "SecretBox",
    "TokenKind",
    "UnknownKeyError",
    "VaultError",
    "add_key_to_file",
    "digest_matches",
    "load_keyring",
    "new_token",
    "token_digest",
]
