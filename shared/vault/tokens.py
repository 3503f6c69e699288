"""Opaque tokens and their keyed digests.

A bearer token is never stored: only HMAC-SHA256 of it under the server's digest key.
A random 256-bit token needs no slow hash; the key makes a dumped digest useless.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from enum import StrEnum


class TokenKind(StrEnum):
    """The prefix says what a token is, so a leaked one is recognised (and scanners can)."""

    AUTHORIZATION_CODE = "kpc"
    REFRESH_TOKEN = "kpr"
    CLIENT_SECRET = "kps"
    REGISTRATION_ACCESS_TOKEN = "kprat"
    INITIAL_ACCESS_TOKEN = "kpiat"
    LOGIN_SESSION = "kpls"
    CHALLENGE = "kpch"


def new_token(kind: TokenKind) -> str:
    """A fresh token: prefix, underscore, 256 bits from the CSPRNG in URL-safe base64."""
    return f"{kind.value}_{secrets.token_urlsafe(32)}"


def token_digest(digest_key: bytes, token: str) -> str:
    """The keyed digest stored in place of the token (hex, 64 characters)."""
    return hmac.new(digest_key, token.encode(), hashlib.sha256).hexdigest()


def digest_matches(digest_key: bytes, token: str, stored_digest: str | None) -> bool:
    """Whether `token` is the one whose digest was stored; constant time."""
    if not stored_digest:
        return False
    return hmac.compare_digest(token_digest(digest_key, token), stored_digest)
