"""The worker killed mid-delivery (SECURITY line 28): `koppel worker` gets SIGKILL while
its deliveries wait on a slow receiver; a new worker delivers every event (at least once:
a duplicate carries the same `webhook-id` and the same body).

The in-process variant with a flushed Redis is
tests/services/sync/test_delivery_recovery.py; this one runs the real processes, on both
backends, with many deliveries in flight at once."""

from __future__ import annotations

import httpx

from tests.faults.stack import Stack

EVENTS = 8
HANG_S = 600.0  # what the receiver makes the first worker wait: longer than the test


def test_worker_sigkilled_mid_delivery_loses_nothing(stack: Stack, report) -> None:
    killed = False
    stack.receiver.delay = lambda _number: 0.0 if killed else HANG_S
    sync, first = stack.start("sync", worker="worker-1")
    stack.subscribe(sync.url, ["employee.updated"])
    headers = stack.connection_headers()
    for number in range(EVENTS):
        response = httpx.patch(f"{sync.url}/v1/employees/{stack.employee(number % 3)}",
                               headers=headers, json={"last_name": f"Kill-{number}"},
                               timeout=30)
        assert response.status_code == 200, response.text
    written = stack.written("employee.")
    assert len(written) == EVENTS

    # Every delivery is on the wire, waiting for an answer, when the worker dies.
    stack.wait(lambda: len({r.headers["webhook-id"] for r in stack.receiver.requests})
               == EVENTS, 30, "all deliveries in flight")
    in_flight = {r.headers["webhook-id"] for r in stack.receiver.requests}
    stack.kill(first)
    killed = True
    assert not stack.receiver.answered, "nothing was answered before the kill"

    stack.worker(name="worker-2")
    stack.wait_delivered(written, 60, "after the new worker started")
    assert in_flight == written
    bodies: dict[str, bytes] = {}
    for received in stack.receiver.requests:
        # A duplicate is the same message: same id, same body.
        assert bodies.setdefault(received.headers["webhook-id"], received.body) == received.body
    report(written=written, delivered=stack.delivered())
