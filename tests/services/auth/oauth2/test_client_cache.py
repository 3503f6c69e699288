"""The token endpoint keeps client rows per process, and what it knows of failed client
authentications (services/auth/oauth2/client_cache.py): every writer of an app
announces its change, and the very next request of a running server with a warm cache
sees it; a lockout refuses a correct credential at once, wherever the failures were
counted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
import redis.exceptions
from sqlmodel import select

import shared.unit_of_work as unit_of_work_module
from cli.apps import set_app_status
from cli.demo_command import seed
from services.auth.client_credentials import failure_key
from services.registry.app import create_app as create_registry
from shared import ratelimit
from shared.config import Settings
from shared.db.engine import sync_session_factory
from shared.models import App, AppStatus, Partner
from shared.status import publish
from shared.vault import TokenKind, new_token, token_digest
from tests.fixtures.auth_server import (
    AuthServer,
    Client,
    listening_socket,
    serve_in_process,
    server_settings,
)
from tests.services.auth.support import AuthRequest, oauth_error, post_form

FIRST = "http://127.0.0.1:9999/first"
SECOND = "http://127.0.0.1:9999/second"


def _grant(server: AuthServer, client: Client, source: str = "127.0.0.1") -> httpx.Response:
    return post_form(server, "/token", client, {"grant_type": "client_credentials"}, source)


def _refused(response: httpx.Response) -> bool:
    return response.status_code in (400, 401) and "access_token" not in response.json()


def _write_silently(server: AuthServer, client_id: str, **values) -> None:
    """Change the app's row without announcing it (what no writer of the code does)."""
    with sync_session_factory(server.engine)() as session, session.begin():
        app = session.exec(select(App).where(App.client_id == client_id)).one()
        for name, value in values.items():
            setattr(app, name, value)


def _server_settings(settings: Settings, server: AuthServer) -> Settings:
    url = server.engine.url.render_as_string(hide_password=False)
    return server_settings(settings, url, server.redis_url, server.url)


def test_a_kept_client_serves_until_its_change_is_announced(
    auth_server: AuthServer, new_app: Callable[..., Client],
) -> None:
    client = new_app()
    assert _grant(auth_server, client).status_code == 200  # the row is kept from here on
    secret = new_token(TokenKind.CLIENT_SECRET)
    _write_silently(auth_server, client.client_id,
                    client_secret_digest=token_digest(auth_server.keyring.digest_key, secret))
    # Unannounced, the kept row still answers: the cache is in use.
    assert _grant(auth_server, client).status_code == 200
    announcer = redis.Redis.from_url(auth_server.redis_url)
    try:
        publish(announcer, [], [client.client_id])
    finally:
        announcer.close()
    old = _grant(auth_server, client)
    assert old.status_code == 401 and oauth_error(old) == "invalid_client", old.text
    renewed = Client(client.client_id, secret, client.auth_method, client.redirect_uris,
                     client.scopes)
    assert _grant(auth_server, renewed).status_code == 200


def test_a_client_is_kept_under_concurrent_requests(
    auth_server: AuthServer, new_app: Callable[..., Client],
) -> None:
    """Requests of one client at once each read the row; one of them keeps it."""
    client = new_app()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: _grant(auth_server, client).status_code, range(16)))
    assert statuses == [200] * 16
    _write_silently(auth_server, client.client_id, status=AppStatus.SUSPENDED)
    assert _grant(auth_server, client).status_code == 200  # kept: the row was not read
    announcer = redis.Redis.from_url(auth_server.redis_url)
    try:
        publish(announcer, [], [client.client_id])
    finally:
        announcer.close()
    assert _refused(_grant(auth_server, client))


@contextlib.contextmanager
def _registry(settings: Settings, server: AuthServer) -> Iterator[str]:
    """The registry, in this process, on the auth server's database and Redis."""
    app = create_registry(_server_settings(settings, server))
    with serve_in_process(app, listening_socket(), settings.log_level) as url:
        yield url


def _par(server: AuthServer, client: Client, redirect_uri: str, scope: str) -> httpx.Response:
    request = AuthRequest(client, scope=scope, redirect_uri=redirect_uri)
    return post_form(server, "/par", client, request.params())


METADATA = {"client_name": "Cache Planner", "redirect_uris": [FIRST],
            "scope": "employee.info.read offline_access",
            "grant_types": ["authorization_code", "refresh_token"]}


def _register(server: AuthServer, http: httpx.Client, partner: str) -> dict:
    """An app registered through the registry (RFC 7591) by a new partner: its answer."""
    initial = new_token(TokenKind.INITIAL_ACCESS_TOKEN)
    with server.sessions() as session, session.begin():
        session.add(Partner(name=partner, initial_access_token_digest=token_digest(
            server.keyring.digest_key, initial)))
    made = http.post("/oauth2/register", json=METADATA,
                     headers={"Authorization": f"Bearer {initial}"})
    assert made.status_code == 201, made.text
    return made.json()


def test_rfc7592_updates_and_deletes_apply_to_the_next_token_request(
    auth_server: AuthServer, settings: Settings,
) -> None:
    metadata = METADATA
    with _registry(settings, auth_server) as registry, httpx.Client(base_url=registry) as http:
        body = _register(auth_server, http, "Cache Co")
        client = Client(body["client_id"], body["client_secret"], "client_secret_basic",
                        (FIRST,), ("employee.info.read",))
        assert _par(auth_server, client, FIRST, "employee.info.read").status_code == 201
        assert _par(auth_server, client, SECOND, "employee.info.read").status_code == 400
        assert _grant(auth_server, client).status_code == 200

        path = f"/oauth2/register/{client.client_id}"
        updated = http.put(path, json={**metadata, "client_id": client.client_id,
                                       "redirect_uris": [SECOND],
                                       "scope": "company.info.read offline_access"},
                           headers={"Authorization": f"Bearer {body['registration_access_token']}"})
        assert updated.status_code == 200, updated.text
        assert _par(auth_server, client, SECOND, "company.info.read").status_code == 201
        assert _par(auth_server, client, FIRST, "company.info.read").status_code == 400
        narrowed = _par(auth_server, client, SECOND, "employee.info.read")
        assert narrowed.status_code == 400 and oauth_error(narrowed) == "invalid_scope"

        token = updated.json()["registration_access_token"]
        deleted = http.delete(path, headers={"Authorization": f"Bearer {token}"})
        assert deleted.status_code == 204, deleted.text
        assert _refused(_grant(auth_server, client))


def test_a_suspension_from_the_command_line_applies_to_the_next_token_request(
    auth_server: AuthServer, settings: Settings, new_app: Callable[..., Client],
) -> None:
    client = new_app()
    assert _grant(auth_server, client).status_code == 200
    cli_settings = _server_settings(settings, auth_server)
    asyncio.run(set_app_status(cli_settings, client.client_id, AppStatus.SUSPENDED))
    assert _refused(_grant(auth_server, client))
    asyncio.run(set_app_status(cli_settings, client.client_id, AppStatus.ACTIVE))
    assert _grant(auth_server, client).status_code == 200


def test_a_demo_seed_rotates_the_first_party_secret_for_the_next_token_request(
    auth_server: AuthServer, settings: Settings,
) -> None:
    cli_settings = _server_settings(settings, auth_server)
    first = seed(cli_settings, "Cache Seed")["first_party_client"]
    before = Client(first["client_id"], first["client_secret"], "client_secret_basic",
                    (first["redirect_uri"],), (), first_party=True)
    assert _grant(auth_server, before).status_code == 200
    again = seed(cli_settings, "Cache Seed")["first_party_client"]
    assert again["client_secret"] != first["client_secret"]
    old = _grant(auth_server, before)
    assert old.status_code == 401 and oauth_error(old) == "invalid_client", old.text


def test_a_lockout_refuses_the_right_secret_after_it_was_known_unlocked(
    auth_server: AuthServer, new_app: Callable[..., Client], fresh_address: Callable[[], str],
) -> None:
    client, address = new_app(), fresh_address()
    assert _grant(auth_server, client, address).status_code == 200  # known: not locked
    wrong = Client(client.client_id, "kps_wrong", client.auth_method, client.redirect_uris,
                   client.scopes)
    for _ in range(auth_server.limits["client_auth"]):
        assert _grant(auth_server, wrong, address).status_code == 401
    locked = _grant(auth_server, client, address)
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0, locked.text


def test_failures_counted_by_another_instance_lock_out_the_next_request(
    auth_server: AuthServer, new_app: Callable[..., Client], fresh_address: Callable[[], str],
) -> None:
    client, address = new_app(), fresh_address()
    assert _grant(auth_server, client, address).status_code == 200  # known: not locked
    name = failure_key(client.client_id, address)

    async def count_failures() -> None:  # as another auth process records them
        other = redis.asyncio.Redis.from_url(auth_server.redis_url)
        try:
            for _ in range(auth_server.limits["client_auth"]):
                await ratelimit.record(other, name, 60)
        finally:
            await other.aclose()

    asyncio.run(count_failures())
    locked = _grant(auth_server, client, address)
    assert locked.status_code == 429, locked.text


def test_the_success_path_does_not_read_the_failure_counter(
    auth_server: AuthServer, new_app: Callable[..., Client], fresh_address: Callable[[], str],
) -> None:
    """Once this process knows the client is not locked out, a granted request asks Redis
    nothing about it (MONITOR sees every command the server runs)."""
    client, address = new_app(), fresh_address()
    assert _grant(auth_server, client, address).status_code == 200
    watcher = redis.Redis.from_url(auth_server.redis_url)
    key = ratelimit.redis_key(failure_key(client.client_id, address)).encode()
    seen: list[bytes] = []
    with watcher.monitor() as monitor:
        for _ in range(3):
            assert _grant(auth_server, client, address).status_code == 200
        marker = redis.Redis.from_url(auth_server.redis_url)
        marker.echo("koppel-monitor-end")
        marker.close()
        for command in monitor.listen():
            seen.append(command["command"].encode())
            if "koppel-monitor-end" in command["command"]:
                break
    watcher.close()
    assert seen and not [c for c in seen if key in c], seen


def test_a_client_kept_by_the_token_endpoint_serves_par_too(
    auth_server: AuthServer, new_app: Callable[..., Client],
) -> None:
    """The kept row is the whole row: PAR (which shows the app) after a grant of the same
    client, in one process, answers as it does on its own."""
    client = new_app()
    assert _grant(auth_server, client).status_code == 200
    request = AuthRequest(client, scope=client.scopes[0], redirect_uri=client.redirect_uris[0])
    pushed = post_form(auth_server, "/par", client, request.params())
    assert pushed.status_code == 201, pushed.text
    assert pushed.json()["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")


def test_a_change_redis_cannot_announce_still_answers_its_caller(
    auth_server: AuthServer, settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RFC 7592: the update is committed and rotates the registration token, so its answer
    must reach the partner even when Redis refuses the announcement (the auth services
    then keep the old row until it expires: client_cache.py)."""
    metadata = METADATA
    with _registry(settings, auth_server) as registry, httpx.Client(base_url=registry) as http:
        body = _register(auth_server, http, "Announce Co")

        async def unreachable(*args, **kwargs):
            raise redis.exceptions.ConnectionError("Redis unreachable at the announcement")

        monkeypatch.setattr(unit_of_work_module, "publish_async", unreachable)
        updated = http.put(f"/oauth2/register/{body['client_id']}",
                           json={**metadata, "client_id": body["client_id"],
                                 "redirect_uris": [SECOND]},
                           headers={"Authorization": f"Bearer {body['registration_access_token']}"})
        monkeypatch.undo()
        assert updated.status_code == 200, updated.text
        answer = updated.json()
        assert answer["redirect_uris"] == [SECOND]
        again = http.get(f"/oauth2/register/{body['client_id']}", headers={
            "Authorization": f"Bearer {answer['registration_access_token']}"})
        assert again.status_code == 200 and again.json()["redirect_uris"] == [SECOND]
