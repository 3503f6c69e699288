"""A PostgreSQL that stops answering (docs/security.md, known gaps): its kernel still
accepts connections and takes every byte, but nothing comes back, as from a stopped or
wedged server or a stuck proxy in front of it. TCP sees nothing wrong, so only the
client's own bounds can end the wait (shared/db/engine.py, services/sync/read_pool.py).

- The whole server falls silent (the proxy's `silence()`): every call answers 503
  problem+json with `Retry-After`, promptly: the checkout ping of a pooled connection
  gives up after PING_TIMEOUT_S, a new connection after CONNECT_TIMEOUT_S. Once it
  answers again (`speak()`), the same processes answer as before.
- One connection falls silent in the middle of a request (the proxy freezes the one
  that sends an UPDATE): the statement's wait is bounded by KOPPEL_DATABASE_READ_TIMEOUT,
  the request answers 503, and the next one, on another connection, succeeds.

SQLite has no server to fall silent: PostgreSQL only."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy.engine import make_url

from shared.db.engine import CONNECT_TIMEOUT_S, PING_TIMEOUT_S
from tests.faults.proxy import TcpProxy
from tests.faults.stack import Stack, answered, timed

pytestmark = pytest.mark.postgres_only

# Without a bound these calls never answer; with it they answer once the ping and one
# new connection have given up (about 7 s), or the statement's bound has passed.
PROMPT_S = PING_TIMEOUT_S + CONNECT_TIMEOUT_S + 4.0
STATEMENT_BOUND_S = 3
CLIENT_TIMEOUT_S = 60.0  # the test's own client: far past any bound, never the cause


def _calls(stack: Stack, urls: dict[str, str]) -> dict[str, Callable[[], httpx.Response]]:
    """One read or write per service, each needing the database, and each readyz."""
    return stack.database_calls(urls, "Silent", CLIENT_TIMEOUT_S) | {
        f"{name} readyz": lambda url=url: httpx.get(f"{url}/readyz", timeout=CLIENT_TIMEOUT_S)
        for name, url in urls.items()
    }


def _all_at_once(calls: dict[str, Callable[[], httpx.Response]],
                 ) -> dict[str, tuple[httpx.Response, float]]:
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = {name: pool.submit(timed, call) for name, call in calls.items()}
        return {name: future.result() for name, future in futures.items()}


def _assert_503(name: str, response: httpx.Response, took: float) -> None:
    assert response.status_code == 503, (name, response.status_code, response.text[:300])
    assert took < PROMPT_S, (name, took)
    if name.endswith("readyz"):
        return
    assert response.headers["content-type"] == "application/problem+json", name
    assert response.headers.get("retry-after"), name
    assert response.json()["status"] == 503, name


def _proxied(stack: Stack, proxy: TcpProxy) -> str:
    return make_url(stack.database_url).set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False)


def test_silent_postgres_answers_503_promptly_and_recovers(stack: Stack) -> None:
    real = make_url(stack.database_url)
    with TcpProxy(real.host or "127.0.0.1", real.port or 5432).running() as proxy:
        services = stack.start("auth", "registry", "sync", database_url=_proxied(stack, proxy))
        urls = {service.name: service.url for service in services}
        calls = _calls(stack, urls)
        # Twice, so every pool holds idle connections when the server falls silent.
        for _ in range(2):
            for name, (response, _took) in _all_at_once(calls).items():
                assert answered(name, response), (name, response.status_code, response.text[:300])
        pids = {p.name: p.popen.pid for p in stack.processes}
        written = len(stack.written("employee."))

        proxy.silence()
        # Twice each: first on the pooled connections, then on new ones.
        for _ in range(2):
            for name, (response, took) in _all_at_once(calls).items():
                _assert_503(name, response, took)
        assert proxy.held, "the server was silent, not down"
        proxy.speak()

        # The same processes answer again, with no restart.
        for name, call in calls.items():
            response = call()
            assert answered(name, response), (name, response.status_code, response.text[:300])
        assert len(stack.written("employee.")) == written + 1, "only the last write wrote"
        assert {p.name: p.popen.pid for p in stack.processes} == pids, "nothing restarted"
        stack.assert_no_internal_errors()


def test_a_connection_silent_mid_request_is_bounded_by_the_read_timeout(
    stack: Stack,
) -> None:
    real = make_url(stack.database_url)
    with TcpProxy(real.host or "127.0.0.1", real.port or 5432).running() as proxy:
        sync = stack.serve("sync", database_url=_proxied(stack, proxy),
                           KOPPEL_DATABASE_READ_TIMEOUT=str(STATEMENT_BOUND_S))
        headers = stack.connection_headers()

        def write(number: int) -> httpx.Response:
            return httpx.patch(f"{sync.url}/v1/employees/{stack.employee(number)}",
                               headers=headers, json={"last_name": f"Mid-{number}"},
                               timeout=CLIENT_TIMEOUT_S)

        assert write(0).status_code == 200
        written = len(stack.written("employee."))
        # The server stays live: only the connection that sends the UPDATE hears nothing
        # more, after its BEGIN and its SELECTs were answered. The UPDATE is marked by its
        # new value: a prepared statement's text is sent only once per connection.
        proxy.freeze_on(b"Mid-1")
        response, took = timed(lambda: write(1))
        assert proxy.frozen == 1
        _assert_503("a write whose UPDATE is never answered", response, took)
        assert took >= STATEMENT_BOUND_S, took
        proxy.freeze_on(None)

        assert write(2).status_code == 200, "the next request uses another connection"
        assert len(stack.written("employee.")) == written + 1, "the frozen write wrote nothing"
        stack.assert_no_internal_errors()
