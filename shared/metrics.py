"""Prometheus metrics: requests by route and status with latency, and `/metrics`.

The domain metrics live here too so that every service and the worker import the same
objects; each process exposes its own registry (services on `/metrics`, the worker on
`koppel worker --metrics-port`). Label values are closed sets: never an id or a token.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

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


def install_metrics(app: FastAPI, service: str) -> None:
    """Count and time every request of `app` by its route template; serve `/metrics`."""

    @app.middleware("http")
    async def _measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        LATENCY.labels(service, request.method, template).observe(time.perf_counter() - start)
        REQUESTS.labels(service, request.method, template, str(response.status_code)).inc()
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
