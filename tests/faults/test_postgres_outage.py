"""PostgreSQL unavailable for a moment (issue 7): the auth, registry and sync processes
and the worker reach PostgreSQL through a TCP proxy that then "crashes" (every
connection reset, new ones refused) for a few seconds and comes back.

During the outage every call answers 503 problem+json with `Retry-After`, promptly;
afterwards the same processes (no restart) answer again, and every event written before
and after the outage is delivered. SQLite has no server to lose: PostgreSQL only."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.faults.proxy import TcpProxy
from tests.faults.stack import Stack, answered, timed

pytestmark = pytest.mark.postgres_only

OUTAGE_S = 4.0
PROMPT_S = 10.0  # an answer during the outage comes within this, never a hang
WRITES = 3


def _write(stack: Stack, sync_url: str, count: int, tag: str) -> None:
    headers = stack.connection_headers()
    for number in range(count):
        response = httpx.patch(f"{sync_url}/v1/employees/{stack.employee(number % 3)}",
                               headers=headers, json={"last_name": f"{tag}-{number}"},
                               timeout=30)
        assert response.status_code == 200, response.text


def test_postgres_outage_answers_503_and_recovers_without_restart(
    stack: Stack, report,
) -> None:
    real = make_url(stack.database_url)
    with TcpProxy(real.host or "127.0.0.1", real.port or 5432).running() as proxy:
        proxied = real.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)
        *services, worker = stack.start("auth", "registry", "sync", worker="worker",
                                        database_url=proxied)
        urls = {service.name: service.url for service in services}
        stack.subscribe(urls["sync"], ["employee.updated"])
        calls = stack.database_calls(urls, "Outage")
        for name, call in calls.items():
            response = call()
            assert answered(name, response), (name, response.status_code, response.text)
        _write(stack, urls["sync"], WRITES, "before")
        pids = {p.name: p.popen.pid for p in stack.processes}

        proxy.down()
        outage_started = time.monotonic()
        # Twice each: the first finds its pooled connection dead, the next cannot connect.
        for _ in range(2):
            for name, call in calls.items():
                response, took = timed(call)
                assert response.status_code == 503, (name, response.status_code, response.text)
                assert response.headers["content-type"] == "application/problem+json", name
                assert response.headers.get("retry-after"), name
                assert response.json()["status"] == 503, name
                assert took < PROMPT_S, (name, took)
        for name, url in urls.items():
            assert httpx.get(f"{url}/readyz", timeout=30).status_code == 503, name
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
        proxy.up()

        for name, call in calls.items():
            response = call()
            assert answered(name, response), (name, response.status_code, response.text)
        _write(stack, urls["sync"], WRITES, "after")
        written = stack.written("employee.")
        # The four "sync write" calls during the outage wrote nothing.
        assert len(written) == 2 * WRITES + 2, len(written)
        stack.wait_delivered(written, 60, "after the outage")
        assert worker.popen.poll() is None, "the worker survived the outage"
        assert {p.name: p.popen.pid for p in stack.processes} == pids, "nothing restarted"
        assert all(p.popen.poll() is None for p in stack.processes)
        stack.assert_no_internal_errors()
    report(written=written, delivered=stack.delivered())
