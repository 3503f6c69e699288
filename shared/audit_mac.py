"""The audit chain's MAC: HMAC-SHA256 under a key derived from a vault key.

Each event's `hash` is HMAC-SHA256(K, previous hash + the event's canonical JSON), where
K = HKDF-SHA256(the key ring key `mac_key_id`, info "koppel.audit-chain.v1"). New events
use the ring's active key, so the MAC key rotates with `koppel keys rotate`; each event
names its key, so old events verify as long as their key stays in the ring (rotation
never removes one).

The chain is written from many places (services, worker, command line) that all share
one process-wide key ring: the runtime (shared/runtime.py) registers its SecretBox with
`use_keyring` (so after a `koppel keys rotate` by another process, once the box has
re-read the key file, new events use the new active key), the command line registers
its settings with `use_settings` (the ring is then loaded on first use). Appending
without either raises instead of writing an unkeyed link.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.config import Settings
from shared.vault import KeyRing, SecretBox, UnknownKeyError, load_keyring
from shared.vault.keyring import reload_keyring

MAC_INFO = b"koppel.audit-chain.v1"


class NoAuditKeyRing(RuntimeError):
    """No key ring is registered for the audit chain in this process."""


_lock = threading.Lock()
# What the chain's key ring comes from: a SecretBox (a runtime's: it follows the key file
# when another process rotates it), a fixed ring, or settings to load a ring from.
_box: SecretBox | None = None
_settings: Settings | None = None


def use_keyring(keys: KeyRing | SecretBox) -> None:
    """Chain (and verify) with this key ring, or with the ring of this SecretBox as it
    changes, from now on."""
    global _box, _settings
    with _lock:
        _box = keys if isinstance(keys, SecretBox) else SecretBox(keys)
        _settings = None


def use_settings(settings: Settings) -> None:
    """Chain with the key ring of these settings, loaded when first needed."""
    global _box, _settings
    with _lock:
        _box, _settings = None, settings


def current_keyring() -> KeyRing:
    """The registered key ring (loading it from the registered settings if need be)."""
    global _box
    with _lock:
        if _box is None and _settings is not None:
            _box = SecretBox(load_keyring(_settings))
        if _box is None:
            raise NoAuditKeyRing("no key ring is registered for the audit chain")
        return _box.ring


def _ring_with(key_id: str) -> KeyRing:
    """The registered ring, re-read from its key file if another process added `key_id`."""
    ring = current_keyring()
    if key_id in ring.keys:
        return ring
    fresh = reload_keyring(ring)
    if fresh is None or key_id not in fresh.keys:
        raise UnknownKeyError(f"the audit chain's key {key_id!r} is not in the key ring")
    with _lock:
        if _box is not None:
            _box.ring = fresh  # from now on new events use its active key too
    return fresh


@lru_cache(maxsize=64)
def _derive(vault_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=MAC_INFO).derive(vault_key)


def mac_key(key_id: str, ring: KeyRing | None = None) -> bytes:
    """The chain MAC key derived from the vault key `key_id`."""
    ring = ring if ring is not None and key_id in ring.keys else _ring_with(key_id)
    return _derive(ring.key(key_id))


def active_mac_key(ring: KeyRing | None = None) -> tuple[str, bytes]:
    """The id and MAC key new events are chained with: the ring's active key."""
    ring = ring or current_keyring()
    return ring.active_key_id, _derive(ring.active_key)


def chain_mac(key: bytes, prev_hash: str, canonical: str) -> str:
    """HMAC-SHA256 (hex) over the previous link and an event's canonical JSON."""
    return hmac.new(key, (prev_hash + canonical).encode(), hashlib.sha256).hexdigest()
