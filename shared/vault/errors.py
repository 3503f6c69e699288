"""What the vault raises: one base class, so callers can fail cleanly on any of them."""


class VaultError(Exception):
    """A ciphertext that cannot be opened, or a key that cannot be used."""


class UnknownKeyError(VaultError):
    """The key id stored beside a ciphertext is not in the key ring."""


class DecryptionError(VaultError):
    """The ciphertext, its tag or its associated data does not match."""
