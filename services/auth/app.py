"""The auth service: login sessions and the OAuth 2.0 / OpenID Connect authorization server."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.auth.challenges.endpoints import router as challenges_router
from services.auth.consent.endpoints import router as consent_router
from services.auth.deps import close_client_cache
from services.auth.login.endpoints import router as login_router
from services.auth.oauth2.authorize import router as authorize_router
from services.auth.oauth2.endpoints import router as oauth_router
from services.auth.openapi_security import declare_security
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
_RAW_SECURITY_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response that does not set them itself.

    Pure ASGI: `@app.middleware("http")` would stream each response through a queue and
    an extra task, which costs more than many an endpoint."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _RAW_SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _ensure_keys(runtime: Runtime) -> None:
    def work() -> None:
        with runtime.session() as session, session.begin():
            ensure_signing_keys(session, runtime.box)

    await run_in_threadpool(work)
    await run_in_threadpool(warm_up)


def _configure(app: FastAPI) -> None:
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "pages" / "static"),
              name="static")
    for router in (authorize_router, login_router, consent_router, oauth_router,
                   challenges_router, logos_router):
        app.include_router(router)
    declare_security(app)


async def _shutdown(app: FastAPI) -> None:
    """The client cache's tracking connection closes with the runtime."""
    close_client_cache(app)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the auth service's app (uvicorn: `services.auth.app:create_app --factory`)."""
    return create_service_app(
        "auth",
        settings or get_settings(),
        title="Koppel auth",
        description="Login, consent and the OAuth 2.0 / OpenID Connect authorization server.",
        configure=_configure,
        startup=_ensure_keys,
        shutdown=_shutdown,
    )
