"""The sync service: the scoped payroll data API, the change feed and webhook endpoints."""

from __future__ import annotations

from fastapi import FastAPI

from services.sync.deps import close_read_pool
from services.sync.events.feed import router as changes_router
from services.sync.events.types import add_webhooks
from services.sync.events.types import router as event_types_router
from services.sync.ratelimits import reserve_and_count
from services.sync.resources.endpoints import router as data_router
from services.sync.resources.slices import company_router as payroll_router
from services.sync.resources.slices import router as slices_router
from services.sync.webhooks.endpoints import router as webhooks_router
from shared.app_factory import create_service_app
from shared.auth_deps import close_verifier
from shared.body_limits import KiB
from shared.config import Settings, get_settings
from shared.etag import document_preconditions

# Data API writes and webhook endpoints: far below this; a bulk write may come near it.
MAX_BODY_BYTES = 256 * KiB


def _configure(app: FastAPI) -> None:
    # A DPoP proof's jti is reserved in the rate-limit counters' Redis call.
    app.state.dpop_reserve = reserve_and_count
    app.include_router(data_router)
    app.include_router(slices_router)
    app.include_router(payroll_router)
    app.include_router(changes_router)
    app.include_router(webhooks_router)
    app.include_router(event_types_router)
    add_webhooks(app)
    document_preconditions(app)


async def _shutdown(app: FastAPI) -> None:
    """The token verifier (its status mirror) and the read pool close with the runtime."""
    close_verifier(app)
    await close_read_pool(app)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the sync service's app (uvicorn: `services.sync.app:create_app --factory`)."""
    return create_service_app(
        "sync",
        settings or get_settings(),
        title="Koppel sync",
        description="The payroll data API, the change feed and webhook endpoints.",
        configure=_configure,
        shutdown=_shutdown,
        declared=True,
        max_body=MAX_BODY_BYTES,
    )
