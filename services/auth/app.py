"""The auth service: login sessions and the OAuth 2.0 / OpenID Connect authorization server."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app_factory import create_service_app
from shared.config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the auth service's app (uvicorn: `services.auth.app:create_app --factory`)."""
    return create_service_app(
        "auth",
        settings or get_settings(),
        title="Koppel auth",
        description="Login, consent and the OAuth 2.0 / OpenID Connect authorization server.",
    )
