"""The registry service: directory, partner apps, connections, overview, policy, audit."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app_factory import create_service_app
from shared.config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the registry's app (uvicorn: `services.registry.app:create_app --factory`)."""
    return create_service_app(
        "registry",
        settings or get_settings(),
        title="Koppel registry",
        description="The directory, partner apps, connections and the environment overview.",
    )
