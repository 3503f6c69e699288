"""The registry service: directory, partner apps, connections, overview, policy, audit."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

from services.registry.approvals.endpoints import router as approvals_router
from services.registry.apps.endpoints import router as registration_router
from services.registry.audit.checkpoints import router as audit_checkpoints_router
from services.registry.audit.endpoints import router as audit_router
from services.registry.catalogue.endpoints import router as catalogue_router
from services.registry.connections.endpoints import router as connections_router
from services.registry.data_access.endpoints import router as data_access_router
from services.registry.directory.endpoints import router as directory_router
from services.registry.exposure.endpoints import router as exposure_router
from services.registry.grants.endpoints import router as grants_router
from services.registry.overview.endpoints import router as overview_router
from services.registry.policy.endpoints import router as policy_router
from services.registry.processing.endpoints import router as processing_router
from services.registry.receipts.endpoints import router as receipts_router
from services.registry.reviews.endpoints import router as reviews_router
from services.registry.sandboxes.endpoints import router as sandboxes_router
from shared.app_factory import create_service_app
from shared.auth_deps import close_verifier
from shared.body_limits import KiB
from shared.config import Settings, get_settings
from shared.errors import problem
from shared.etag import document_preconditions


async def _data_error(_request: Request, exc: Exception) -> JSONResponse:
    # Input the database cannot hold (a NUL character on PostgreSQL, a number out of
    # range): the transaction was rolled back, so nothing was written.
    return problem(400, "bad-request", "Bad request",
                   "the input holds a value the database cannot store (e.g. a NUL character)")


def _routes(app: FastAPI) -> None:
    app.add_exception_handler(DataError, _data_error)
    app.include_router(connections_router)
    app.include_router(receipts_router)
    app.include_router(grants_router)
    app.include_router(overview_router)
    app.include_router(exposure_router)
    app.include_router(processing_router)
    app.include_router(data_access_router)
    app.include_router(directory_router)
    app.include_router(policy_router)
    app.include_router(reviews_router)
    app.include_router(approvals_router)
    app.include_router(audit_router)
    app.include_router(audit_checkpoints_router)
    app.include_router(registration_router)
    app.include_router(catalogue_router)
    app.include_router(sandboxes_router)
    document_preconditions(app)


async def _shutdown(app: FastAPI) -> None:
    """The token verifier (and its status mirror) closes with the runtime."""
    close_verifier(app)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the registry's app (uvicorn: `services.registry.app:create_app --factory`)."""
    return create_service_app(
        "registry",
        settings or get_settings(),
        title="Koppel registry",
        description="The directory, partner apps, connections and the environment overview.",
        configure=_routes,
        shutdown=_shutdown,
        declared=True,
        # A directory user with the most companies (1000 ids) fits.
        max_body=64 * KiB,
    )
