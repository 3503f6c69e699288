"""Checking a login: failure-only rate limits and an equal-time password check.

A login is always for some app: the client of the authorization request, and the
first-party backend that collected the credentials (challenge API). A first-party app
bound to an environment admits only that environment's users; anyone else gets the
answer of a wrong password, and the attempt counts as a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from services.auth.login import repository
from shared import ratelimit
from shared.models import User
from shared.passwords import verify_password
from shared.policy.apps import admits_user
from shared.runtime import Runtime


@dataclass
class TooManyFailures:
    retry_after: int


def _check_password(runtime: Runtime, email: str, password: str,
                    client_ids: Sequence[str]) -> User | None:
    with runtime.session() as session:
        user = repository.user_by_email(session, email)
        apps = repository.apps(session, client_ids)
    # The hash is verified even for an unknown user, so both take the same time.
    ok = verify_password(user.password_hash if user else None, password)
    if not ok or user is None or not user.active or len(apps) != len(set(client_ids)):
        return None
    return user if all(admits_user(app, user.environment_id) for app in apps) else None


async def authenticate(
    runtime: Runtime, username: str, password: str, address: str | None,
    client_ids: Sequence[str],
) -> User | TooManyFailures | None:
    """The active user with these credentials whom every app of `client_ids` admits;
    None if the credentials are wrong or an app does not admit the user.

    Only failed attempts count, per account and per address. An address that has used
    up its budget is refused (without checking the password) until the window ends. An
    account that has is throttled, not locked: one attempt per
    `failed_login_account_interval` seconds is checked, and a right password then gets
    in, so a stranger guessing an email cannot keep its owner out.
    """
    settings, redis = runtime.settings, runtime.redis
    email = username.strip().lower()
    account = f"login:account:{email}"
    by_address = f"login:address:{address}" if address else None
    if by_address is not None:
        wait = await ratelimit.retry_after(redis, by_address,
                                           settings.failed_login_limit_per_address)
        if wait is not None:
            return TooManyFailures(wait)
    interval = settings.failed_login_account_interval
    if await ratelimit.count(redis, account) >= settings.failed_login_limit_per_account:
        wait = await ratelimit.take_turn(redis, account, interval)
        if wait is not None:
            return TooManyFailures(wait)
    user = await run_in_threadpool(_check_password, runtime, email, password, client_ids)
    if user is None:
        failures = await ratelimit.record(redis, account, settings.failed_attempt_window)
        if by_address is not None:
            await ratelimit.record(redis, by_address, settings.failed_attempt_window)
        if failures >= settings.failed_login_limit_per_account:
            await ratelimit.hold_turn(redis, account, interval)
        return None
    await ratelimit.reset(redis, account)
    return user
