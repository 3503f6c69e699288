"""Pending authorization requests and the browser they belong to.

An authorization request waits in Redis (under the keyed digest of its challenge) while
the user logs in and consents. It is bound to the browser that started it, so a
challenge sent to someone else's browser is of no use there.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import asdict, dataclass, field

from fastapi import Request, Response

from services.auth.cookies import set_cookie
from shared.runtime import Runtime
from shared.vault import TokenKind, new_token, token_digest

PENDING_TTL_S = 15 * 60
BROWSER_COOKIE = "koppel_browser"


@dataclass
class Pending:
    """One authorization request between /authorize and the redirect back to the app."""

    query: list[tuple[str, str]]
    client_id: str
    browser: str  # digest of the browser cookie
    app_name: str = ""
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    user_id: str | None = None
    auth_time: float | None = None
    force_login: bool = False


def _pending_key(runtime: Runtime, challenge: str) -> str:
    return f"koppel:authz:{token_digest(runtime.keyring.digest_key, challenge)}"


async def save_pending(runtime: Runtime, pending: Pending, challenge: str | None = None) -> str:
    challenge = challenge or new_token(TokenKind.CHALLENGE)
    data = asdict(pending)
    await runtime.redis.set(_pending_key(runtime, challenge), json.dumps(data), ex=PENDING_TTL_S)
    return challenge


async def load_pending(runtime: Runtime, challenge: str | None) -> Pending | None:
    if not challenge or len(challenge) > 200:
        return None
    raw = await runtime.redis.get(_pending_key(runtime, challenge))
    if raw is None:
        return None
    data = json.loads(raw)
    data["query"] = [tuple(item) for item in data["query"]]
    return Pending(**data)


async def drop_pending(runtime: Runtime, challenge: str) -> None:
    await runtime.redis.delete(_pending_key(runtime, challenge))


def browser_digest(runtime: Runtime, request: Request) -> str | None:
    cookie = request.cookies.get(BROWSER_COOKIE)
    if not cookie or len(cookie) > 200:
        return None
    return token_digest(runtime.keyring.digest_key, cookie)


def ensure_browser_cookie(runtime: Runtime, request: Request, response: Response) -> str:
    """The browser's binding digest, setting the cookie if it has none yet."""
    existing = browser_digest(runtime, request)
    if existing:
        return existing
    cookie = secrets.token_urlsafe(32)
    set_cookie(runtime, response, BROWSER_COOKIE, cookie, max_age=365 * 24 * 3600)
    return token_digest(runtime.keyring.digest_key, cookie)


def same_browser(runtime: Runtime, request: Request, pending: Pending) -> bool:
    digest = browser_digest(runtime, request)
    return digest is not None and hmac.compare_digest(digest, pending.browser)
