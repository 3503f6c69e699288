"""Auth, registry and sync on real sockets in this process, sharing one seeded database
and Redis: what a partner app's HTTP client meets in production."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from services.auth.app import create_app as create_auth
from services.registry.app import create_app as create_registry
from services.sync.app import create_app as create_sync
from shared.config import Settings
from shared.db.engine import create_sync_engine, sync_session_factory
from shared.vault import KeyRing
from tests.clients.harness import NodeApp
from tests.fixtures.auth_server import (
    _LIMITS,
    AuthServer,
    listening_socket,
    own_redis,
    seed,
    serve_in_process,
    server_settings,
)
from tests.fixtures.database import fresh_database, migrate


@dataclass(frozen=True)
class Stack:
    """The auth server (as the Python `Browser` drives it) and where the other two are."""

    auth: AuthServer
    registry_url: str
    sync_url: str


@pytest.fixture(scope="session")
def stack(settings: Settings, keyring: KeyRing,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("client-stack")
    with fresh_database(tmp) as database_url, own_redis(settings, 4) as redis_url:
        migrate(database_url)
        engine = create_sync_engine(database_url)
        sessions = sync_session_factory(engine)
        try:
            demo, clients = seed(sessions, keyring)
            sockets = [listening_socket() for _ in range(3)]
            auth_url, registry_url, sync_url = (
                f"http://127.0.0.1:{sock.getsockname()[1]}" for sock in sockets)
            served = server_settings(settings, database_url, redis_url, auth_url).model_copy(
                update={"registry_url": registry_url, "sync_url": sync_url})
            apps = (create_auth(served), create_registry(served), create_sync(served))
            with contextlib.ExitStack() as running:
                for app, sock in zip(apps, sockets, strict=True):
                    running.enter_context(serve_in_process(app, sock, settings.log_level))
                auth = AuthServer(auth_url, engine, sessions, keyring, redis_url, None, demo,
                                  clients, dict(_LIMITS))
                yield Stack(auth, registry_url, sync_url)
        finally:
            engine.dispose()


@pytest.fixture
def node_app() -> Iterator[NodeApp]:
    app = NodeApp()
    try:
        yield app
    finally:
        app.close()
