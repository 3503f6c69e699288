"""Clients for the services, with their lifespan running (as under uvicorn)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from services.auth.app import create_app as create_auth
from services.registry.app import create_app as create_registry
from services.sync.app import create_app as create_sync
from shared.config import Settings

APP_FACTORIES: dict[str, Callable[[Settings], FastAPI]] = {
    "auth": create_auth,
    "registry": create_registry,
    "sync": create_sync,
}


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and give an httpx client on it (no socket).

    A lifespan may commit rows (the auth service's signing keys): a test using this
    should request `committing_sessions`, which empties the tables afterwards."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture(params=sorted(APP_FACTORIES))
async def service_client(
    request: pytest.FixtureRequest, settings: Settings, committing_sessions: sessionmaker[Session]
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on each service in turn (auth, registry, sync), lifespan running."""
    async with running(APP_FACTORIES[request.param](settings)) as client:
        yield client
