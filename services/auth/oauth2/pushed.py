"""Pushed authorization requests (RFC 9126): kept in Redis between /par and /authorize.

The PAR endpoint validates a request exactly as /authorize would (`check_request`) and
keeps all its parameters, whatever they are, under a `request_uri` of 256 random bits.
/authorize takes them back with one GETDEL, so a `request_uri` works once, and keyed by
the client too, so another client's `request_uri` is simply unknown (and stays usable
for its own client). Only the keyed digest is a Redis key: a Redis dump holds no usable
`request_uri`.
"""

from __future__ import annotations

import json
import secrets

import redis
from redis import asyncio as aioredis

from shared.vault import token_digest

URN_PREFIX = "urn:ietf:params:oauth:request_uri:"
# The client authentication of the PAR request itself: never kept, never replayed.
CLIENT_AUTH_PARAMETERS = frozenset({"client_secret", "client_assertion", "client_assertion_type"})
MAX_REQUEST_URI_LENGTH = 200


def is_pushed_reference(request_uri: str | None) -> bool:
    """A `request_uri` this server hands out (anything else is not supported)."""
    return bool(request_uri) and str(request_uri).startswith(URN_PREFIX)


def _key(digest_key: bytes, client_id: str, request_uri: str) -> str:
    return f"koppel:par:{token_digest(digest_key, f'{client_id} {request_uri}')}"


def push(store: redis.Redis, digest_key: bytes, client_id: str,
         query: list[tuple[str, str]], ttl: int) -> str:
    """Keep the validated request's parameters for `ttl` seconds; its `request_uri`."""
    request_uri = URN_PREFIX + secrets.token_urlsafe(32)
    store.set(_key(digest_key, client_id, request_uri), json.dumps(query), ex=ttl)
    return request_uri


async def take(store: aioredis.Redis, digest_key: bytes, client_id: str | None,
               request_uri: str) -> list[tuple[str, str]] | None:
    """The pushed request's parameters, once: None when unknown, used, expired or pushed
    by another client."""
    if not client_id or len(request_uri) > MAX_REQUEST_URI_LENGTH:
        return None
    raw = await store.getdel(_key(digest_key, client_id, request_uri))
    if raw is None:
        return None
    return [(str(name), str(value)) for name, value in json.loads(raw)]
