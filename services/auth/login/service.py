"""Checking a login: failure-only rate limits and an equal-time password check."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from shared import ratelimit
from shared.models import User
from shared.passwords import verify_password
from shared.runtime import Runtime


@dataclass
class TooManyFailures:
    retry_after: int


def _check_password(runtime: Runtime, email: str, password: str) -> User | None:
    with runtime.session() as session:
        user = session.exec(select(User).where(User.email == email)).first()
    # The hash is verified even for an unknown user, so both take the same time.
    ok = verify_password(user.password_hash if user else None, password)
    return user if ok and user is not None and user.active else None


async def authenticate(
    runtime: Runtime, username: str, password: str, address: str | None
) -> User | TooManyFailures | None:
    """The active user with these credentials; None if they are wrong.

    Only failed attempts count, per account and per address; once either has used up
    its budget, attempts are refused (without checking the password) until the window ends.
    """
    settings = runtime.settings
    email = username.strip().lower()
    limits = [(f"login:account:{email}", settings.failed_login_limit_per_account)]
    if address:
        limits.append((f"login:address:{address}", settings.failed_login_limit_per_address))
    for name, limit in limits:
        wait = await ratelimit.retry_after(runtime.redis, name, limit)
        if wait is not None:
            return TooManyFailures(wait)
    user = await run_in_threadpool(_check_password, runtime, email, password)
    if user is None:
        for name, _ in limits:
            await ratelimit.record(runtime.redis, name, settings.failed_attempt_window)
        return None
    await ratelimit.reset(runtime.redis, limits[0][0])
    return user
