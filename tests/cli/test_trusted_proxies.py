"""`koppel serve` believes X-Forwarded-For only from KOPPEL_TRUSTED_PROXIES (SECURITY 40,
issue 14 finding 8): by default a caller on loopback cannot rotate the address that the
per-address login limit counts; once loopback is a trusted proxy, the forwarded address is
the one counted."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from shared.config import Settings
from shared.db.engine import create_sync_engine, sync_session_factory
from shared.models import Environment, UserTemplate
from shared.vault import KeyRing
from tests.fixtures.auth_server import own_redis, seed
from tests.fixtures.database import fresh_database, migrate
from tests.fixtures.factories import DEFAULT_PASSWORD, make_user
from tests.multi_instance.cluster import child_env, free_port, serve, stop, wait_ready
from tests.services.auth.support import AuthRequest, Browser

PER_ADDRESS = 3


@contextlib.contextmanager
def _auth_service(subprocess_env: dict[str, str], settings: Settings, keyring: KeyRing,
                  tmp_path: Path, extra: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    """`koppel serve auth` on a seeded database of its own; yields its URL, the first-party
    client's id and the email of a user who may log in with DEFAULT_PASSWORD."""
    with fresh_database(tmp_path) as database_url, own_redis(settings, 3) as redis_url:
        migrate(database_url)
        engine = create_sync_engine(database_url)
        try:
            sessions = sync_session_factory(engine)
            demo, clients = seed(sessions, keyring)
            with sessions() as session, session.begin():
                environment = session.get(Environment, uuid.UUID(demo["environment"]["id"]))
                email = make_user(session, environment, template=UserTemplate.ACCOUNTANT).email
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            base = {k: v for k, v in subprocess_env.items() if k != "KOPPEL_TRUSTED_PROXIES"}
            env = child_env({**base, "KOPPEL_DATABASE_URL": database_url,
                             "KOPPEL_REDIS_URL": redis_url, "KOPPEL_ISSUER": url,
                             "KOPPEL_AUTH_URL": url,
                             "KOPPEL_FAILED_LOGIN_LIMIT_PER_ADDRESS": str(PER_ADDRESS),
                             **extra})
            process = serve("auth", "auth", port, env, tmp_path)
            try:
                wait_ready([process])
                yield url, clients["first_party"], email
            finally:
                stop([process])
        finally:
            engine.dispose()


def _login(url: str, client, email: str, password: str, forwarded_for: str) -> httpx.Response:
    """A login from 127.0.0.1 that says it forwards for `forwarded_for`."""
    agent = Browser(SimpleNamespace(url=url), "127.0.0.1")  # type: ignore[arg-type]
    agent.http.headers["X-Forwarded-For"] = forwarded_for
    try:
        page = agent.follow(agent.authorize(AuthRequest(client, scope="openid")))
        assert page.status_code == 200, page.text[:300]
        return agent.submit(page, username=email, password=password)
    finally:
        agent.close()


def _unknown() -> str:
    return f"nobody-{uuid.uuid4().hex[:10]}@example.test"


@pytest.mark.parametrize("trusted", [False, True], ids=["default", "loopback_trusted"])
def test_line40_forwarded_for_counts_only_from_a_trusted_proxy(
    subprocess_env: dict[str, str], settings: Settings, keyring: KeyRing, tmp_path: Path,
    trusted: bool,
) -> None:
    extra = {"KOPPEL_TRUSTED_PROXIES": "127.0.0.1"} if trusted else {}
    with _auth_service(subprocess_env, settings, keyring, tmp_path, extra) as (url, client,
                                                                             email):
        # Failures of unknown accounts, each claiming another client address.
        for i in range(PER_ADDRESS):
            failed = _login(url, client, _unknown(), "nope", f"198.51.100.{i + 1}")
            assert failed.status_code == 401, failed.text[:300]
        honest = _login(url, client, email, DEFAULT_PASSWORD, "198.51.100.200")
        if not trusted:
            # Every attempt counted against the peer, 127.0.0.1: its budget is spent.
            assert honest.status_code == 429, honest.text[:300]
            return
        assert honest.status_code == 303, honest.text[:300]
        # Trusted: the forwarded address is the one counted, and it can be spent too.
        for _ in range(PER_ADDRESS):
            assert _login(url, client, _unknown(), "nope", "198.51.100.9").status_code == 401
        assert _login(url, client, email, DEFAULT_PASSWORD, "198.51.100.9").status_code == 429
        assert _login(url, client, email, DEFAULT_PASSWORD, "198.51.100.10").status_code == 303
