"""A Redis that stops answering (docs/security.md, known gaps): the auth, registry and
sync services, the worker and the command line reach the private redis-server through a
proxy whose `silence()` accepts connections and every byte, and answers nothing, as a
stopped or wedged server (or a stuck proxy) would. TCP sees nothing wrong; only the
clients' `KOPPEL_REDIS_TIMEOUT` (shared/runtime.py) ends the wait.

Each path then does what it does when Redis is down (tests/faults/test_redis_restart.py),
within a few seconds instead of never: what Redis guards (a token's status not mirrored
in the process, rate limits and failed-attempt counts, login sessions) answers 503
problem+json with `Retry-After`; an operator's `koppel app suspend` commits, notes that
the status cache was not updated and ends; its events wait in the outbox. Once Redis
answers again (`speak()`, with its data: nothing was lost), the same processes answer
as before and the worker delivers every event written."""

from __future__ import annotations

import time
from types import SimpleNamespace

import httpx

from tests.faults.proxy import TcpProxy
from tests.faults.stack import Stack, assert_problem_503, timed
from tests.services.auth.support import AuthRequest, Browser

REDIS_TIMEOUT_S = 2.0  # shared/config.py's default, which the processes run with
# A request meets the bound once (its first Redis call fails, and it answers); the
# margin is for a loaded machine. Without the bound these calls never answer.
PROMPT_S = 3 * REDIS_TIMEOUT_S
CLI_PROMPT_S = 30.0  # a whole `koppel` process: its start-up, then its bounded calls
CLIENT_TIMEOUT_S = 60.0
EVENTS = ["employee.updated", "connection.suspended", "connection.resumed"]


def test_silent_redis_answers_as_when_down_promptly_and_recovers(
    stack: Stack, report,
) -> None:
    with TcpProxy("127.0.0.1", stack.redis.port).running() as proxy:
        proxied = f"redis://127.0.0.1:{proxy.port}/0"
        auth, registry, sync, worker = stack.start(
            "auth", "registry", "sync", worker="worker", redis_url=proxied)
        stack.subscribe(sync.url, EVENTS)
        client = stack.seed.client
        employee = f"{sync.url}/v1/employees/{stack.employee()}"
        token_request = {"grant_type": "client_credentials", "scope": "webhooks.manage"}
        request = AuthRequest(client, scope="employee.info offline_access")
        agent = Browser(SimpleNamespace(url=auth.url))
        newcomer = Browser(SimpleNamespace(url=auth.url))
        calls = {
            # Connection 1's status was never read: the process has no mirror of it.
            "a token whose status is not mirrored": lambda: httpx.get(
                employee, headers=stack.connection_headers(1), timeout=CLIENT_TIMEOUT_S),
            "a write (rate limits)": lambda: httpx.patch(
                employee, headers=stack.connection_headers(0), timeout=CLIENT_TIMEOUT_S,
                json={"last_name": f"Silent-{time.monotonic_ns()}"}),
            "a token request (failed-attempt counts)": lambda: httpx.post(
                f"{auth.url}/token", auth=(client.client_id, client.secret),
                data=token_request, timeout=CLIENT_TIMEOUT_S),
            "authorize with a login session": lambda: agent.authorize(request),
            "the login page": lambda: newcomer.authorize(request),
        }
        try:
            assert httpx.get(employee, headers=stack.connection_headers(0)).status_code == 200
            assert httpx.patch(employee, headers=stack.connection_headers(0),
                               json={"last_name": "Before"}).status_code == 200
            agent.log_in(request, stack.seed.user)
            stack.wait_delivered(stack.written(), 30, "before the silence")

            proxy.silence()
            for what, call in calls.items():
                assert_problem_503(*timed(call), what, PROMPT_S)
            for process in (auth, registry, sync):
                response, took = timed(lambda p=process: httpx.get(
                    f"{p.url}/readyz", timeout=CLIENT_TIMEOUT_S))
                assert response.status_code == 503, (process.name, response.text[:300])
                assert took < PROMPT_S, (process.name, took)
            # An operator suspends the app meanwhile: committed, not published, not
            # nudged, and the command ends.
            started = time.monotonic()
            output = stack.cli("app", "suspend", client.client_id, redis_url=proxied)
            assert time.monotonic() - started < CLI_PROMPT_S
            assert "the status cache was not updated" in output, output[-2000:]
            suspended = stack.written("connection.suspended")
            assert len(suspended) == len(stack.seed.connections)
            assert len(stack.written("employee.")) == 1, "the write during it wrote nothing"
            assert proxy.held, "Redis was silent, not down"
            proxy.speak()

            # Redis kept its data: the suspension it never heard of is published now.
            stack.cli("app", "resume", client.client_id)
            assert httpx.get(employee, headers=stack.connection_headers(1),
                             timeout=CLIENT_TIMEOUT_S).status_code == 200
            assert httpx.patch(employee, headers=stack.connection_headers(0),
                               timeout=CLIENT_TIMEOUT_S,
                               json={"last_name": "After"}).status_code == 200
            token = httpx.post(f"{auth.url}/token", auth=(client.client_id, client.secret),
                               data=token_request, timeout=CLIENT_TIMEOUT_S)
            assert token.status_code == 200, token.text
            kept = agent.authorize(request)  # the session outlived the silence
            assert kept.status_code in (302, 303), kept.text[:300]
            assert "/login" not in kept.headers["location"], kept.headers["location"]
            page = newcomer.follow(newcomer.authorize(request))
            assert page.status_code == 200 and "/login" in str(page.url), page.text[:300]

            written = stack.written()
            stack.wait_delivered(written, 40, "the events written while Redis was silent")
            assert worker.popen.poll() is None, "the worker outlived the silence"
            stack.assert_no_internal_errors()
        finally:
            agent.close()
            newcomer.close()
    report(written=written, delivered=stack.delivered())
