"""The key set of a client that registered a `jwks_uri` (RFC 7591), for `private_key_jwt`.

Fetched through the SSRF guard (shared/ssrf.py: public addresses only, no redirects,
loopback only with KOPPEL_WEBHOOKS_ALLOW_LOOPBACK=true, at most 64 KiB), kept in Redis
for a few minutes, and fetched again when an assertion does not verify with the kept
set (a rotated key), at most once a minute per client so that bad assertions cannot
make Koppel hammer the client's server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import anyio.from_thread
from authlib.oauth2.rfc6749.errors import InvalidClientError
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.auth.oauth2.context import AuthContext
from shared import ssrf

CACHE_S = 300
REFETCH_INTERVAL_S = 60
MAX_JWKS_BYTES = 64 * 1024
TIMEOUT_S = 5.0


def _key(client_id: str, uri: str, kind: str) -> str:
    digest = hashlib.sha256(uri.encode()).hexdigest()[:32]
    return f"koppel:jwks:{kind}:{client_id}:{digest}"


async def _download(uri: str, allow_loopback: bool) -> Any:
    try:
        answer = await ssrf.request("GET", uri, allow_loopback=allow_loopback,
                                    timeout=TIMEOUT_S, max_body=MAX_JWKS_BYTES + 1,
                                    headers={"Accept": "application/json"})
    except ssrf.UnsafeURL as error:
        raise InvalidClientError(
            description=f"the client's jwks_uri is refused: {error}") from None
    except (OSError, TimeoutError) as error:
        raise InvalidClientError(
            description="the client's jwks_uri could not be fetched") from error
    if answer.status != 200 or len(answer.body) > MAX_JWKS_BYTES:
        raise InvalidClientError(
            description=f"the client's jwks_uri answered {answer.status}, not a key set")
    try:
        document = json.loads(answer.body)
        KeySet.import_key_set(document)
    except (ValueError, TypeError, KeyError, JoseError) as error:
        raise InvalidClientError(
            description="the client's jwks_uri does not hold a JWK set") from error
    return document


def _fetch(uri: str, allow_loopback: bool) -> Any:
    """Run the guarded download from the thread pool the grants run in."""
    try:
        return anyio.from_thread.run(_download, uri, allow_loopback)
    except RuntimeError:  # not in an anyio worker thread (a script, a benchmark)
        return asyncio.run(_download(uri, allow_loopback))


def client_keys(ctx: AuthContext, client_id: str, uri: str, *, fresh: bool = False
                ) -> KeySet | None:
    """The client's key set from `uri`: the kept copy, or a new download if there is none
    or `fresh` is asked for. With `fresh`, None when a fresh download was made less
    than a minute ago (the kept copy is what there is)."""
    cached: Any = ctx.redis.get(_key(client_id, uri, "set"))
    if fresh or cached is None:
        if fresh and not ctx.redis.set(_key(client_id, uri, "fetched"), b"1",
                                       ex=REFETCH_INTERVAL_S, nx=True):
            return None
        document = _fetch(uri, ctx.settings.webhooks_allow_loopback)
        ctx.redis.set(_key(client_id, uri, "set"), json.dumps(document), ex=CACHE_S)
        return KeySet.import_key_set(document)
    return KeySet.import_key_set(json.loads(cached))
