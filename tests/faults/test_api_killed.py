"""The API process dies between the commit and the enqueue (SECURITY line 28), with no
test hook in the product: the sync service talks to Redis through a proxy that freezes
any connection on which a nudge is pushed (it accepts the bytes and never answers).
Each change commits its event, then hangs in the nudge; the process gets SIGKILL there.
No nudge ever reached Redis; a worker started afterwards finds the outbox rows (its
sweeper) and delivers every event."""

from __future__ import annotations

import threading

import httpx

from shared.jobs import NUDGES
from tests.faults.proxy import TcpProxy
from tests.faults.stack import Stack

EVENTS = 5
NUDGE = NUDGES.encode()  # the list every nudge is pushed on


def test_api_killed_between_commit_and_enqueue_loses_nothing(stack: Stack, report) -> None:
    with TcpProxy("127.0.0.1", stack.redis.port).running() as proxy:
        # The frozen nudge must hold until the kill, not end at the Redis read bound.
        sync = stack.serve("sync", redis_url=f"redis://127.0.0.1:{proxy.port}/0",
                           KOPPEL_REDIS_TIMEOUT="120")
        stack.subscribe(sync.url, ["employee.updated"])
        proxy.freeze_on(NUDGE)
        headers = stack.connection_headers()
        answers: list[object] = []

        def change(number: int) -> None:
            try:
                answers.append(httpx.patch(
                    f"{sync.url}/v1/employees/{stack.employee(number % 3)}", headers=headers,
                    json={"last_name": f"Lost-nudge-{number}"}, timeout=120))
            except httpx.HTTPError as exc:
                answers.append(exc)

        callers = [threading.Thread(target=change, args=(n,), daemon=True)
                   for n in range(EVENTS)]
        for caller in callers:
            caller.start()
        # Committed, and stuck in the nudge: each change holds one frozen connection.
        stack.wait(lambda: len(stack.written("employee.")) == EVENTS
                   and proxy.frozen == EVENTS, 60, "commits, then frozen nudges")
        assert answers == [], "no change has been answered yet"
        stack.kill(sync)
        for caller in callers:
            caller.join(10)
        assert len(answers) == EVENTS
        assert all(isinstance(a, httpx.TransportError) for a in answers), answers

    written = stack.written("employee.")
    redis = stack.redis.client()
    try:
        assert redis.llen(NUDGES) == 0, "no nudge reached Redis"
        assert redis.keys("arq:*") == [], "nor any job"
    finally:
        redis.close()
    stack.worker()
    stack.wait_delivered(written, 40, "after the worker started")
    report(written=written, delivered=stack.delivered())
