"""Prometheus metrics: requests by route and status with latency, and `/metrics`."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUESTS = Counter(
    "koppel_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
LATENCY = Histogram(
    "koppel_http_request_duration_seconds", "HTTP request latency", ["service", "method", "route"]
)


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
