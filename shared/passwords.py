"""Password hashing with argon2id (argon2-cffi), equal in time for unknown users."""

from __future__ import annotations

import os
import threading
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.config import Settings

# argon2-cffi's defaults follow RFC 9106's second recommended profile (64 MiB, t=3, p=4),
# which are also the settings' defaults; `use_settings` applies the configured cost.
_hasher = PasswordHasher()

# Each hash holds 64 MiB while it runs, and argon2 is bound by the CPU: more hashes at once
# than cores only multiply the memory (a burst of logins on 40 worker threads would take
# 2.5 GiB). Callers beyond the limit wait their turn.
MAX_CONCURRENT_HASHES = max(1, os.cpu_count() or 1)
_slots = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)


def use_settings(settings: Settings) -> None:
    """Hash new passwords at the argon2 cost of `settings` (KOPPEL_ARGON2_*); stored
    hashes name their own cost and verify whatever it is."""
    global _hasher
    cost = (settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)
    if cost == (_hasher.time_cost, _hasher.memory_cost, _hasher.parallelism):
        return
    _hasher = PasswordHasher(time_cost=cost[0], memory_cost=cost[1], parallelism=cost[2])
    _dummy_hash.cache_clear()  # the unknown user's stand-in costs what a real one does


def hash_password(password: str) -> str:
    """The argon2id hash to store."""
    with _slots:
        return _hasher.hash(password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password("koppel-timing-equaliser")


def warm_up() -> None:
    """Build the stand-in hash now, so the first unknown-user login is not the slow one."""
    _dummy_hash()


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no user (`None`) it still spends the same time."""
    candidate = stored_hash or _dummy_hash()
    try:
        with _slots:
            return _hasher.verify(candidate, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(stored_hash)
