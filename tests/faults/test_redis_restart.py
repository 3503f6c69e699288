"""Redis restarted (issue 7; SECURITY lines 17, 24 and 28): the auth and sync services
and the worker use a private redis-server, which is killed (SIGKILL, nothing persisted)
and started again, empty.

What "degrades safely" means here, decided from SECURITY.md:

- Nothing that Redis guards is answered from a guess while it is down. A call whose
  token status cannot be read (line 24), a login, a consent step or a token request whose
  failed-attempt counters cannot be read (line 17) answers 503 problem+json with
  `Retry-After`, promptly: never a 500, never a hang, never a pass. A wrong password or
  client secret is not even checked then, so it cannot be guessed unthrottled.
- What Redis alone held is lost with it, and that is accepted: login sessions (the user
  logs in again) and the failed-attempt counts (the window starts afresh; the limit
  itself applies again at once). Statuses are not lost: a connection suspended while
  Redis was down is refused after the restart, because a missing status is read from
  the database, never taken as "active".
- Events written while Redis is down (the CLI suspends an app: its commit succeeds, its
  nudge and status publication fail) wait in the outbox; the worker's sweeper delivers
  them once Redis is back. Every event written is delivered.
"""

from __future__ import annotations

import functools
import time
from types import SimpleNamespace

import httpx

from tests.faults.stack import Stack, assert_problem_503, timed
from tests.services.auth.support import AuthRequest, Browser

PROMPT_S = 10.0
LIMIT = 2  # failed logins per account before 429
EVENTS = ["employee.updated", "connection.suspended", "connection.resumed"]
_problem_503 = functools.partial(assert_problem_503, prompt=PROMPT_S)


def _wrong_password(agent: Browser, request: AuthRequest, stack: Stack) -> httpx.Response:
    login_page = agent.follow(agent.authorize(request))
    return agent.login(login_page, stack.seed.owners[1], password="not the password")


def test_redis_restart_degrades_safely_and_the_outbox_catches_up(
    stack: Stack, report,
) -> None:
    auth, registry, sync, worker = stack.start(
        "auth", "registry", "sync", worker="worker",
        KOPPEL_FAILED_LOGIN_LIMIT_PER_ACCOUNT=str(LIMIT))
    stack.subscribe(sync.url, EVENTS)
    employee = f"{sync.url}/v1/employees/{stack.employee()}"
    partner_view = f"{registry.url}/v1/app/connections"
    headers = stack.connection_headers(0)
    client = stack.seed.client
    token_request = {"grant_type": "client_credentials", "scope": "webhooks.manage"}
    request = AuthRequest(client, scope="employee.info offline_access")
    agent = Browser(SimpleNamespace(url=auth.url))
    victim = Browser(SimpleNamespace(url=auth.url))
    try:
        # Before: a status cached (and mirrored), a login session, a spent failure budget.
        for _ in range(2):
            assert httpx.get(employee, headers=headers).status_code == 200
            assert httpx.get(partner_view, headers=stack.app_headers()).status_code == 200
        assert httpx.patch(employee, headers=headers,
                           json={"last_name": "Before"}).status_code == 200
        agent.log_in(request, stack.seed.user)
        assert "koppel_session" in agent.http.cookies
        for _ in range(LIMIT):
            assert _wrong_password(victim, request, stack).status_code == 401
        assert _wrong_password(victim, request, stack).status_code == 429
        pending_login = victim.follow(victim.authorize(request))  # a form to post later
        stack.wait_delivered(stack.written(), 30, "before the restart")

        stack.redis.kill()
        _problem_503(*timed(lambda: httpx.get(employee, headers=headers, timeout=30)),
                     "a token whose status cannot be read")
        _problem_503(*timed(lambda: httpx.patch(employee, headers=headers, timeout=30,
                                                json={"last_name": "During"})), "a write")
        _problem_503(*timed(lambda: httpx.get(partner_view, headers=stack.app_headers(),
                                              timeout=30)), "an app token on the registry")
        _problem_503(*timed(lambda: agent.authorize(request)), "authorize with a session")
        _problem_503(*timed(lambda: victim.login(pending_login, stack.seed.owners[1])),
                     "the right password for an account over its limit: not let through")
        _problem_503(*timed(lambda: victim.login(pending_login, stack.seed.owners[1],
                                                 password="not the password")),
                     "a wrong password")
        for secret in (client.secret, "not the secret"):
            _problem_503(*timed(lambda s=secret: httpx.post(
                f"{auth.url}/token", auth=(client.client_id, s), data=token_request,
                timeout=30)), "a token request whose failure count cannot be read")
        # An operator suspends the app meanwhile: committed, not published, not nudged.
        stack.cli("app", "suspend", client.client_id)
        suspended = stack.written("connection.suspended")
        assert len(suspended) == len(stack.seed.connections)
        assert len(stack.written("employee.")) == 1, "the write during the outage wrote nothing"
        time.sleep(1)
        stack.redis.start()

        # The suspension holds although Redis never heard of it.
        refused = httpx.get(employee, headers=headers, timeout=30)
        assert refused.status_code == 401, refused.text
        refused = httpx.get(partner_view, headers=stack.app_headers(), timeout=30)
        assert refused.status_code == 401, refused.text
        # The outbox catches up: the events written during the outage arrive (sweeper).
        stack.wait_delivered(suspended, 40, "the events written while Redis was down")
        stack.cli("app", "resume", client.client_id)
        assert httpx.get(employee, headers=headers, timeout=30).status_code == 200
        assert httpx.get(partner_view, headers=stack.app_headers()).status_code == 200
        # Sessions are gone: the browser is asked to log in again, and can.
        page = agent.follow(agent.authorize(request))
        assert page.status_code == 200 and "/login" in str(page.url), page.text[:300]
        assert agent.login(page, stack.seed.user).status_code == 303
        # Failure counts started afresh; the limit applies again at once.
        for _ in range(LIMIT):
            assert _wrong_password(victim, request, stack).status_code == 401
        assert _wrong_password(victim, request, stack).status_code == 429
        token = httpx.post(f"{auth.url}/token", auth=(client.client_id, client.secret),
                           data=token_request, timeout=30)
        assert token.status_code == 200, token.text

        written = stack.written()
        stack.wait_delivered(written, 30, "everything")
        assert worker.popen.poll() is None, "the worker outlived the restart"
        assert "Redis unreachable; the worker waits for it" in worker.log_text()
        stack.assert_no_internal_errors()
    finally:
        agent.close()
        victim.close()
    report(written=written, delivered=stack.delivered())
