"""The sync service: the scoped payroll data API, the change feed and webhook endpoints."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app_factory import create_service_app
from shared.config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the sync service's app (uvicorn: `services.sync.app:create_app --factory`)."""
    return create_service_app(
        "sync",
        settings or get_settings(),
        title="Koppel sync",
        description="The payroll data API, the change feed and webhook endpoints.",
    )
