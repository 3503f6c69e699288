"""The login form (SECURITY.md lines 16 and 17): answered with 303, failed attempts
rate limited per account and per address, equal timing for unknown and known users;
bad client secrets at the token endpoint are rate limited too.

The server runs with low limits (see SERVER_LIMITS) so that the tests stay short; each
test sends from loopback addresses of its own, so their counts never mix.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import pytest

from shared import passwords
from shared.config import ARGON2_MEMORY_KIB, ARGON2_PARALLELISM, ARGON2_TIME_COST, Settings
from tests.fixtures.auth_server import AuthServer, Client
from tests.fixtures.factories import password_hash
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    User,
    only_form,
    post_form,
)


def login_attempt(browser: Callable[..., Browser], server: AuthServer, source: str,
                  email: str, password: str) -> tuple[httpx.Response, float]:
    """Start an authorization from `source`, post the login form; the answer and how long
    the POST took."""
    agent = browser(source)
    page = agent.follow(agent.authorize(AuthRequest(server.clients["first_party"],
                                                    scope="openid")))
    assert page.status_code == 200
    started = time.perf_counter()
    response = agent.submit(page, username=email, password=password)
    return response, time.perf_counter() - started


def assert_throttled(response: httpx.Response, server: AuthServer) -> None:
    assert response.status_code == 429, (response.status_code, response.text[:300])
    wait = int(response.headers["retry-after"])
    assert 0 < wait <= 15 * 60
    assert "location" not in response.headers
    assert "koppel_session" not in response.headers.get("set-cookie", "")


def unknown_email() -> str:
    return f"nobody-{uuid.uuid4().hex[:10]}@example.test"


# ---- Line 16 -----------------------------------------------------------------------------


def test_line16_login_post_answers_303_to_consent(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
) -> None:
    agent = browser()
    page = agent.follow(agent.authorize(AuthRequest(auth_server.clients["basic"])))
    form = only_form(page)
    assert form.method == "post" and form.action == "/login"
    response = agent.login(page, new_user())
    assert response.status_code == 303  # never 307/308: the password must not be re-posted
    assert response.headers["location"].startswith("/consent?consent_challenge=")
    cookie = response.headers["set-cookie"]
    assert "koppel_session=" in cookie
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()


def test_line16_failed_login_shows_the_form_again_without_redirect(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    fresh_address: Callable[[], str],
) -> None:
    user = new_user()
    response, _ = login_attempt(browser, auth_server, fresh_address(), user.email, "wrong")
    assert response.status_code == 401
    assert "location" not in response.headers
    assert only_form(response).value("username") == user.email
    assert only_form(response).value("password") == ""


def test_login_post_from_another_browser_is_refused(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
) -> None:
    """The login form only works in the browser that started the request (login CSRF)."""
    user = new_user()
    victim = browser()
    page = victim.follow(victim.authorize(AuthRequest(auth_server.clients["basic"])))
    form = only_form(page)
    attacker = browser()
    response = attacker.http.post("/login", data={**dict(form.fields),
                                                  "username": user.email,
                                                  "password": user.password})
    assert response.status_code == 400
    assert "koppel_session" not in response.headers.get("set-cookie", "")
    # The genuine browser can still go on.
    assert victim.login(page, user).status_code == 303


# ---- Line 17 -----------------------------------------------------------------------------


def test_line17_wrong_passwords_for_one_account_are_throttled_not_locked(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    fresh_address: Callable[[], str],
) -> None:
    """From a new address each time: the count is the account's. Over the limit the
    account is throttled, not locked: the owner's right password gets in on its turn."""
    user = new_user()
    interval = auth_server.limits["account_interval"]
    for _ in range(auth_server.limits["per_account"]):
        response, _ = login_attempt(browser, auth_server, fresh_address(), user.email, "nope")
        assert response.status_code == 401
    # Right after the failure that used up the budget, nothing is checked for a while,
    # whatever the password, and however the email is typed.
    for email, password in ((user.email, user.password),
                            (f"  {user.email.upper()} ", user.password)):
        response, _ = login_attempt(browser, auth_server, fresh_address(), email, password)
        assert_throttled(response, auth_server)
        assert int(response.headers["retry-after"]) <= interval
    # Another account is not affected.
    other = new_user()
    response, _ = login_attempt(browser, auth_server, fresh_address(), other.email,
                                other.password)
    assert response.status_code == 303
    # Once the turn has passed, the owner's right password is checked and succeeds...
    time.sleep(interval + 0.2)
    response, _ = login_attempt(browser, auth_server, fresh_address(), user.email,
                                user.password)
    assert response.status_code == 303
    # ... and clears the count: the next typo is a plain failure, not a throttled one.
    response, _ = login_attempt(browser, auth_server, fresh_address(), user.email, "typo")
    assert response.status_code == 401


def test_line17_an_account_over_its_limit_gets_one_checked_attempt_per_interval(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    fresh_address: Callable[[], str],
) -> None:
    """A guesser over the account's limit gets one checked guess per interval, even when
    it sends many at once; the others answer 429 without a password check."""
    user = new_user()
    interval = auth_server.limits["account_interval"]
    for _ in range(auth_server.limits["per_account"]):
        response, _ = login_attempt(browser, auth_server, fresh_address(), user.email, "nope")
        assert response.status_code == 401
    time.sleep(interval + 0.2)
    forms = []
    for _ in range(4):
        agent = browser(fresh_address())
        page = agent.follow(agent.authorize(AuthRequest(auth_server.clients["first_party"],
                                                        scope="openid")))
        forms.append((agent, page))
    with ThreadPoolExecutor(len(forms)) as pool:
        answers = list(pool.map(lambda f: f[0].submit(f[1], username=user.email,
                                                      password="guess"), forms))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [401, 429, 429, 429], statuses
    for response in answers:
        if response.status_code == 429:
            assert_throttled(response, auth_server)
    # The checked guess started a new interval: the right password waits for it too.
    response, _ = login_attempt(browser, auth_server, fresh_address(), user.email,
                                user.password)
    assert_throttled(response, auth_server)


def test_line17_wrong_passwords_from_one_address_are_rate_limited(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    fresh_address: Callable[[], str],
) -> None:
    """A different account each time: the count is the address's."""
    address = fresh_address()
    for _ in range(auth_server.limits["per_address"]):
        response, _ = login_attempt(browser, auth_server, address, unknown_email(), "nope")
        assert response.status_code == 401
    user = new_user()
    response, _ = login_attempt(browser, auth_server, address, user.email, user.password)
    assert_throttled(response, auth_server)
    response, _ = login_attempt(browser, auth_server, fresh_address(), user.email,
                                user.password)
    assert response.status_code == 303


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_line17_bad_client_secrets_are_rate_limited(
    auth_server: AuthServer, new_app: Callable[..., Client], fresh_address: Callable[[], str],
    auth_method: str,
) -> None:
    client = new_app(auth_method=auth_method)
    wrong = replace(client, secret="kps_" + "w" * 43)
    form = {"grant_type": "authorization_code", "code": "kpc_unknown",
            "redirect_uri": client.redirect_uri, "code_verifier": "v" * 50}
    address = fresh_address()
    for _ in range(auth_server.limits["client_auth"]):
        response = post_form(auth_server, "/token", wrong, form, source=address)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
    response = post_form(auth_server, "/token", client, form, source=address)
    assert_throttled(response, auth_server)
    assert response.headers["cache-control"] == "no-store"
    # The right secret from elsewhere authenticates (and fails only on the made-up code).
    response = post_form(auth_server, "/token", client, form, source=fresh_address())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


@pytest.fixture
def production_password_cost(settings: Settings) -> Iterator[None]:
    """Password hashes at the production cost while the test runs (the run's is cheap,
    tests/fixtures/settings.py): the known users' stored hashes and the unknown user's
    stand-in, in this process, which serves the auth server too."""
    production = settings.model_copy(update={
        "argon2_time_cost": ARGON2_TIME_COST, "argon2_memory_kib": ARGON2_MEMORY_KIB,
        "argon2_parallelism": ARGON2_PARALLELISM})
    passwords.use_settings(production)
    password_hash.cache_clear()
    try:
        yield
    finally:
        passwords.use_settings(settings)
        password_hash.cache_clear()


@pytest.mark.usefixtures("production_password_cost")
def test_line17_timing_is_equal_for_unknown_and_known_users(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    fresh_address: Callable[[], str],
) -> None:
    # A first unknown-user attempt warms what the server caches for unknown users.
    login_attempt(browser, auth_server, fresh_address(), unknown_email(), "nope")
    unknown_times, known_times = [], []
    for known in (new_user(), new_user(), new_user()):
        response, took = login_attempt(browser, auth_server, fresh_address(), unknown_email(),
                                       "nope")
        assert response.status_code == 401
        unknown_times.append(took)
        response, took = login_attempt(browser, auth_server, fresh_address(), known.email,
                                       "nope")
        assert response.status_code == 401
        known_times.append(took)
    ratio = statistics.median(unknown_times) / statistics.median(known_times)
    assert 0.5 < ratio < 2, (unknown_times, known_times)
    # Both spend the password hash's time: no shortcut for either.
    assert min(unknown_times) > 0.02, unknown_times


def test_line17_successful_logins_are_not_throttled(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    fresh_address: Callable[[], str],
) -> None:
    """All from one address: more successes than either limit, and failures below the
    account's limit that a success in between clears."""
    assert auth_server.limits["per_account"] == 2  # the sequence below is made for it
    user = new_user()
    address = fresh_address()
    successes = max(auth_server.limits["per_account"], auth_server.limits["per_address"]) + 1
    expected = [303] * successes + [401, 303, 401, 401]
    answers = [
        login_attempt(browser, auth_server, address, user.email,
                      user.password if status == 303 else "typo")[0].status_code
        for status in expected
    ]
    # Without the reset the last attempt would be the third failure in a row: 429.
    assert answers == expected
