"""The common shape of every Koppel service: lifespan runtime, errors, health, metrics,
request ids and (when enabled) tracing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI

from shared.body_limits import BodyLimits, declare_body_limits
from shared.cache_control import NoStoreForCredentials
from shared.config import Settings, service_url
from shared.errors import install_error_handlers
from shared.health import health_router
from shared.idempotency import IdempotencyMiddleware, document_idempotency_key
from shared.logging import configure_logging
from shared.metrics import install_metrics
from shared.openapi import declare_servers
from shared.policy.dependency import annotate_operations
from shared.policy.openapi import declare_policy
from shared.problem_answers import document_answers
from shared.proxies import trust_forwarded_headers
from shared.request_id import RequestIdMiddleware
from shared.runtime import Runtime, open_runtime
from shared.tracing import (
    instrument_app,
    open_tracer_provider,
    shutdown_tracing,
    tag_request_id,
)

# Bytes of a request body, unless the service or the route says otherwise.
DEFAULT_MAX_BODY = 16 * 1024


def create_service_app(
    service: str, settings: Settings, *, title: str, description: str,
    configure: Callable[[FastAPI], None] | None = None,
    startup: Callable[[Runtime], Awaitable[None]] | None = None,
    shutdown: Callable[[FastAPI], Awaitable[None]] | None = None,
    declared: bool = False, max_body: int = DEFAULT_MAX_BODY,
) -> FastAPI:
    """A FastAPI app for `service` whose runtime opens and closes with its lifespan;
    `shutdown` runs before the runtime closes (what the app built on top of it). With
    `declared`, every route must name its operation in the policy (shared/policy), and
    every POST and PATCH accepts an `Idempotency-Key` (shared/idempotency). Request
    bodies are limited to `max_body` bytes unless a route declares its own limit
    (`shared.body_limits.body_limit`)."""

    tracer_provider = open_tracer_provider(settings, service)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings, service)
        try:
            async with open_runtime(settings) as runtime:
                app.state.runtime = runtime
                if startup:
                    await startup(runtime)
                try:
                    yield
                finally:
                    if shutdown:
                        await shutdown(app)
        finally:
            if tracer_provider is not None:
                await shutdown_tracing(tracer_provider)

    # Tracing is Koppel's own (shared/tracing.py, opt-in) and metrics are Prometheus:
    # FastAPI's built-in telemetry stays off, or it asks OpenTelemetry for its global
    # providers on every request.
    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.settings = settings
    # What the clients call this service (a DPoP proof's `htu`, shared/auth_deps.py).
    app.state.public_url = settings.public_url(service)
    install_error_handlers(app)
    if declared:
        # Added first, so it runs innermost: the routes' problem answers reach it as
        # answers, every other middleware sees a replay like any answer, and the body it
        # fingerprints has passed the body limits already.
        app.add_middleware(IdempotencyMiddleware)
        document_idempotency_key(app)
    # Outside the routes (and idempotency): every other middleware (metrics, request id,
    # the auth service's security headers) also wraps its 413 and 400 answers.
    app.add_middleware(BodyLimits, service=app, default=max_body)
    install_metrics(app, service)
    app.include_router(health_router())
    if configure:
        configure(app)
    declare_body_limits(app, max_body)
    if declared:
        annotate_operations(app)
    # What a client generator needs: the server, each operation's id, security and refusals
    # (from the policy), then the bodies of every error answer (docs/architecture.md).
    declare_servers(app, service_url(settings, service))
    declare_policy(app, settings)
    document_answers(app)
    # Answers to callers with credentials are never stored by a cache.
    app.add_middleware(NoStoreForCredentials)
    # Added last, so it runs first: every log line of the request carries its id.
    app.add_middleware(RequestIdMiddleware, service=service,
                       on_request_id=tag_request_id if tracer_provider else None)
    # Before everything else reads the client's address (per-address limits, logs).
    trust_forwarded_headers(app, settings)
    if tracer_provider is not None:
        # Outside every middleware: the request's span is current for all of them.
        instrument_app(app, tracer_provider)
    return app
