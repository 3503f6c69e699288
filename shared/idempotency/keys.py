"""What identifies an idempotent request: its key (checked), who sent it (the owner) and
what it asked (the fingerprint)."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from starlette.requests import Request

from shared.auth_deps import authenticate
from shared.errors import Unauthorized
from shared.vault import token_digest

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
METHODS = frozenset({"POST", "PATCH"})
MAX_KEY_LENGTH = 255
# Printable ASCII, spaces included (HTTP already strips them at both ends).
KEY_PATTERN = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}")
# How long an answer is kept and replayed.
RETENTION = timedelta(hours=24)


def valid_key(raw: bytes) -> str | None:
    """The key of the header's value, or None if it is not 1 to 255 printable ASCII."""
    try:
        key = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    return key if KEY_PATTERN.fullmatch(key) else None


def fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 of method, path and body: the same key must come with the same request."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def owner_of(request: Request, digest_key: bytes) -> str | None:
    """Who sends the request, as a keyed digest; None without a Bearer or DPoP credential.

    A valid access token's caller is its client and subject, so a retry with a renewed
    token finds its answer; any other credential (an initial or registration access
    token, or one that will be refused) is its own owner. Keys of two owners never meet.
    The caller is worked out exactly as the route will (`authenticate`, the DPoP proof
    included, and only once), so a stored answer is never replayed to a request whose
    token or proof the route would refuse.
    """
    scheme, _, credential = (request.headers.get("authorization") or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() not in ("bearer", "dpop") or not credential:
        return None
    try:
        principal = await authenticate(request)
    except Unauthorized:
        identity = "credential\x00" + credential
    else:
        identity = f"token\x00{principal.client_id}\x00{principal.claims.get('sub', '')}"
    return token_digest(digest_key, identity)
