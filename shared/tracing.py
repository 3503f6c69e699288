"""Optional OpenTelemetry tracing, on with `KOPPEL_OTEL_ENABLED=true`.

Each process gets its own TracerProvider (resource `service.name` "<prefix>-<service>")
that batches spans to the OTLP/HTTP collector at `KOPPEL_OTEL_ENDPOINT` + `/v1/traces`.
The FastAPI apps get a server span per request (health and metrics excepted), the worker a
consumer span per job; log lines written inside a span carry its `trace_id` and `span_id`.
The exporter's standard `OTEL_EXPORTER_OTLP_*` variables (headers, certificates) still apply.

Off (the default) nothing here imports OpenTelemetry and nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from shared.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

TRACES_PATH = "/v1/traces"
UNTRACED_URLS = "/healthz,/readyz,/metrics"
REQUEST_ID_ATTRIBUTE = "koppel.request_id"
EXPORT_TIMEOUT_S = 10


def service_name(settings: Settings, service: str) -> str:
    return f"{settings.otel_service_name_prefix}-{service}"


def traces_endpoint(settings: Settings) -> str:
    base = settings.otel_endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def open_tracer_provider(settings: Settings, service: str) -> TracerProvider | None:
    """The process's tracer provider, or None when tracing is off. Call `shutdown()` on
    it when the process stops: that exports the spans still batched."""
    if not settings.otel_enabled:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name(settings, service),
                                  "service.namespace": settings.otel_service_name_prefix}),
        sampler=ParentBased(TraceIdRatioBased(settings.otel_sample_ratio)),
    )
    exporter = OTLPSpanExporter(endpoint=traces_endpoint(settings), timeout=EXPORT_TIMEOUT_S)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


async def shutdown_tracing(provider: TracerProvider) -> None:
    """Export the spans still batched and stop. In a thread: the export is a blocking
    HTTP call, which must not stall this event loop (nor wait on a server it runs)."""
    await asyncio.to_thread(provider.shutdown)


def instrument_app(app: FastAPI, provider: TracerProvider) -> None:
    """A server span for every request but health checks and metrics scrapes; an incoming
    W3C `traceparent` continues the caller's trace."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider,
                                       excluded_urls=UNTRACED_URLS,
                                       exclude_spans=["receive", "send"],
                                       server_request_hook=_without_query)


def _without_query(span: Any, scope: dict[str, Any]) -> None:
    """Spans keep paths, never query strings (a login challenge, say, travels in one)."""
    attributes = getattr(span, "attributes", None) or {}
    url = attributes.get("http.url")
    if isinstance(url, str) and "?" in url:
        span.set_attribute("http.url", url.split("?", 1)[0])
    if attributes.get("url.query"):
        span.set_attribute("url.query", "")


def tag_request_id(request_id: str) -> None:
    """Put the request id on the current span (the request's server span)."""
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)


def trace_ids_processor() -> Any:
    """A structlog processor adding the current span's ids to each log line."""
    from opentelemetry import trace

    def add_trace_ids(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event["trace_id"] = format(context.trace_id, "032x")
            event["span_id"] = format(context.span_id, "016x")
        return event

    return add_trace_ids


@contextlib.contextmanager
def job_span(provider: TracerProvider | None, name: str,
             attributes: Mapping[str, Any]) -> Iterator[Any]:
    """A consumer span around one job run (nothing when tracing is off); yields the span
    or None."""
    if provider is None:
        yield None
        return
    from opentelemetry.trace import SpanKind

    tracer = provider.get_tracer("koppel.worker")
    attributes = {k: v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, kind=SpanKind.CONSUMER,
                                      attributes=attributes) as span:
        yield span
