"""The auth service: login sessions and the OAuth 2.0 / OpenID Connect authorization server."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from services.auth.challenges.endpoints import router as challenges_router
from services.auth.consent.endpoints import router as consent_router
from services.auth.login.endpoints import router as login_router
from services.auth.oauth2.authorize import router as authorize_router
from services.auth.oauth2.endpoints import router as oauth_router
from services.auth.pages.logos import router as logos_router
from shared.app_factory import create_service_app
from shared.config import Settings, get_settings
from shared.passwords import warm_up
from shared.runtime import Runtime
from shared.signing import ensure_signing_keys

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


async def _ensure_keys(runtime: Runtime) -> None:
    def work() -> None:
        with runtime.session() as session, session.begin():
            ensure_signing_keys(session, runtime.box)

    await run_in_threadpool(work)
    await run_in_threadpool(warm_up)


def _configure(app: FastAPI) -> None:
    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "pages" / "static"),
              name="static")
    for router in (authorize_router, login_router, consent_router, oauth_router,
                   challenges_router, logos_router):
        app.include_router(router)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the auth service's app (uvicorn: `services.auth.app:create_app --factory`)."""
    return create_service_app(
        "auth",
        settings or get_settings(),
        title="Koppel auth",
        description="Login, consent and the OAuth 2.0 / OpenID Connect authorization server.",
        configure=_configure,
        startup=_ensure_keys,
    )
