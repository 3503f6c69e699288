"""The key ring: encryption keys by id with one active, and the digest key.

Keys come from configuration (`KOPPEL_KEYS`, `KOPPEL_ACTIVE_KEY_ID`, `KOPPEL_DIGEST_KEY`)
or, on the embedded default, from `var/keys.json` (mode 0600), made on first start.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from shared.config import ConfigError, Settings

KEY_BYTES = 32


def _decode_key(name: str, value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"key {name!r} is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise ConfigError(f"key {name!r} must be {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def _encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def new_key_id() -> str:
    """A sortable key id: the creation time and a random suffix."""
    return f"k{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class KeyRing:
    """Encryption keys by id, the id of the one that encrypts, and the digest key."""

    keys: dict[str, bytes]
    active_key_id: str
    digest_key: bytes
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.active_key_id not in self.keys:
            raise ConfigError(f"active key id {self.active_key_id!r} is not in the key ring")

    @property
    def active_key(self) -> bytes:
        return self.keys[self.active_key_id]

    def key(self, key_id: str) -> bytes:
        from shared.vault.errors import UnknownKeyError

        try:
            return self.keys[key_id]
        except KeyError:
            raise UnknownKeyError(f"unknown key id {key_id!r}") from None


def _ring_from_document(doc: dict, source: Path | None) -> KeyRing:
    try:
        keys = {kid: _decode_key(kid, value) for kid, value in doc["keys"].items()}
        return KeyRing(keys, doc["active_key_id"], _decode_key("digest", doc["digest_key"]), source)
    except (KeyError, TypeError, AttributeError):
        raise ConfigError(f"key file {source} is malformed") from None


def _write_new_key_file(path: Path) -> None:
    key_id = new_key_id()
    doc = {
        "active_key_id": key_id,
        "keys": {key_id: _encode_key(secrets.token_bytes(KEY_BYTES))},
        "digest_key": _encode_key(secrets.token_bytes(KEY_BYTES)),
    }
    _atomic_write(path, doc, exclusive=True)


def _atomic_write(path: Path, doc: dict, *, exclusive: bool) -> None:
    """Write the key file 0600 through a temporary file; `exclusive` never replaces one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            # The link fails if another process made the file first; theirs stands.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_keyring(settings: Settings, *, create: bool = True) -> KeyRing:
    """The key ring in force: configured keys, or the key file (made if `create`)."""
    if settings.keys:
        if not settings.active_key_id:
            raise ConfigError("KOPPEL_KEYS is set but KOPPEL_ACTIVE_KEY_ID is not")
        if not settings.digest_key:
            raise ConfigError("KOPPEL_KEYS is set but KOPPEL_DIGEST_KEY is not")
        keys = {kid: _decode_key(kid, value) for kid, value in settings.keys.items()}
        return KeyRing(keys, settings.active_key_id, _decode_key("digest", settings.digest_key))
    path = settings.key_file
    if not path.exists():
        if not create:
            raise ConfigError(f"no key file at {path}")
        _write_new_key_file(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from None
    return _ring_from_document(doc, path)


def add_key_to_file(ring: KeyRing) -> KeyRing:
    """Generate a key into the key file and make it the active one; old keys stay readable."""
    if ring.source is None:
        raise ConfigError(
            "the key ring comes from KOPPEL_KEYS: add the new key there and set "
            "KOPPEL_ACTIVE_KEY_ID, then run `koppel keys rotate` again"
        )
    key_id = new_key_id()
    keys = {**ring.keys, key_id: secrets.token_bytes(KEY_BYTES)}
    doc = {
        "active_key_id": key_id,
        "keys": {kid: _encode_key(raw) for kid, raw in keys.items()},
        "digest_key": _encode_key(ring.digest_key),
    }
    _atomic_write(ring.source, doc, exclusive=False)
    return KeyRing(keys, key_id, ring.digest_key, ring.source)


def reload_keyring(ring: KeyRing) -> KeyRing | None:
    """The key file's current ring (after a `koppel keys rotate` by another process), or
    None when the ring did not come from a key file."""
    if ring.source is None:
        return None
    try:
        doc = json.loads(ring.source.read_text())
    except (OSError, ValueError):
        return None
    return _ring_from_document(doc, ring.source)
