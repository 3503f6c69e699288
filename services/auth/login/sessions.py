"""Login sessions: the cookie holds a random token, Redis its digest's session record
(shared/sessions.py, where the registry and the command line end all of a user's)."""

from __future__ import annotations

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from services.auth.cookies import set_cookie
from services.auth.login import repository
from shared.runtime import Runtime
from shared.sessions import drop_session, load_session, save_session
from shared.vault import TokenKind, new_token

SESSION_COOKIE = "koppel_session"


def _user_active(runtime: Runtime, user_id: str) -> bool:
    with runtime.session() as session:
        return repository.user_active(session, user_id)


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
