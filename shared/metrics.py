"""Prometheus metrics: requests by route and status with latency, and `/metrics`.

The domain metrics live here too so that every service and the worker import the same
objects; each process exposes its own registry (services on `/metrics`, the worker on
`koppel worker --metrics-port`). Label values are closed sets: never an id or a token.
"""

from __future__ import annotations

import time

from fastapi import Depends, FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

from shared.policy.dependency import declare

REQUESTS = Counter(
    "koppel_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
LATENCY = Histogram(
    "koppel_http_request_duration_seconds", "HTTP request latency", ["service", "method", "route"]
)

TOKENS_ISSUED = Counter(
    "koppel_tokens_issued_total", "Successful token endpoint responses", ["grant_type"]
)
CONSENT_DECISIONS = Counter(
    "koppel_consent_decisions_total", "Consent decisions recorded", ["decision"]
)
REVOCATIONS = Counter(
    "koppel_connection_revocations_total", "Connections revoked", ["by"]
)
WEBHOOK_DELIVERIES = Counter(
    "koppel_webhook_deliveries_total", "Webhook delivery attempts", ["outcome"]
)
WEBHOOK_LATENCY = Histogram(
    "koppel_webhook_delivery_duration_seconds", "Webhook delivery attempt latency",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
OUTBOX_DEPTH = Gauge(
    "koppel_outbox_depth", "Work waiting, as seen by the last sweep", ["queue"]
)


def delivery_outcome(succeeded: bool, status_code: int | None, gone: bool) -> str:
    """A closed label for one delivery attempt: succeeded, gone, http_error or error."""
    if succeeded:
        return "succeeded"
    if gone:
        return "gone"
    return "http_error" if status_code is not None else "error"


def serve_worker_metrics(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104
    """Expose this process's metrics on `host:port` from a background thread."""
    start_http_server(port, addr=host)


class _Measure:
    """Pure ASGI middleware timing each request by its route template (no extra task, no
    response streaming through a queue, unlike `@app.middleware("http")`)."""

    def __init__(self, app, service: str) -> None:
        self.app, self.service = app, service
        self._children: dict[tuple[str, str, int], tuple] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless the app answers

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._observe(scope, status, time.perf_counter() - start)

    def _observe(self, scope, status: int, elapsed: float) -> None:
        template = getattr(scope.get("route"), "path", "unmatched")
        key = (scope["method"], template, status)
        children = self._children.get(key)
        if children is None:
            if len(self._children) > 10_000:  # templates and statuses are closed sets
                self._children.clear()
            children = self._children[key] = (
                LATENCY.labels(self.service, key[0], template),
                REQUESTS.labels(self.service, key[0], template, str(status)),
            )
        children[0].observe(elapsed)
        children[1].inc()


def install_metrics(app: FastAPI, service: str) -> None:
    """Count and time every request of `app` by its route template; serve `/metrics`."""
    app.add_middleware(_Measure, service=service)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(declare("metrics"))])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
