"""Pending authorization requests, login sessions and the browser they belong to.

An authorization request waits in Redis (under the keyed digest of its challenge) while
the user logs in and consents. It is bound to the browser that started it, so a
challenge sent to someone else's browser is of no use there.
"""

from __future__ import annotations

import hmac
import json
import secrets
import uuid
from dataclasses import asdict, dataclass, field

from fastapi import Request, Response
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from shared.models import User
from shared.runtime import Runtime
from shared.sessions import drop_session, load_session, save_session
from shared.vault import TokenKind, new_token, token_digest

PENDING_TTL_S = 15 * 60
BROWSER_COOKIE = "koppel_browser"
SESSION_COOKIE = "koppel_session"


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


def set_cookie(
    runtime: Runtime, response: Response, name: str, value: str, *, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        path="/",
        secure=runtime.settings.issuer.startswith("https://"),
    )


# Login sessions: the cookie holds a random token, Redis its digest's session record
# (shared/sessions.py, where the registry and the command line end all of a user's).


def _user_active(runtime: Runtime, user_id: str) -> bool:
    with runtime.session() as session:
        try:
            return bool(session.exec(select(User.active).where(
                User.id == uuid.UUID(user_id))).first())
        except ValueError:
            return False


async def start_session(
    runtime: Runtime, response: Response, user_id: str, auth_time: float
) -> None:
    token = new_token(TokenKind.LOGIN_SESSION)
    ttl = runtime.settings.login_session_ttl
    await save_session(runtime.redis, runtime.keyring.digest_key, token, user_id, auth_time, ttl)
    set_cookie(runtime, response, SESSION_COOKIE, token, max_age=ttl)


async def current_session(runtime: Runtime, request: Request) -> dict | None:
    """The login session of the request's cookie: {"user_id", "auth_time"}, or None
    (also when its user was signed out everywhere, or is no longer active)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    record = await load_session(runtime.redis, runtime.keyring.digest_key, token)
    if record is None or not await run_in_threadpool(_user_active, runtime, record["user_id"]):
        return None
    return record


async def end_session(runtime: Runtime, request: Request, response: Response) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token and len(token) <= 200:
        await drop_session(runtime.redis, runtime.keyring.digest_key, token)
    response.delete_cookie(SESSION_COOKIE, path="/")
