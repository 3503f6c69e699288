"""Refresh tokens (SECURITY.md lines 10-13): they rotate on every use, a reused old one
ends its family (never the consent), two refreshes at once make one family, and they
expire unused after 30 days and at the family's absolute end."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from sqlmodel import func, select

# How long the server lets a client race itself; a reuse after it counts as theft.
from services.auth.oauth2.grants import REFRESH_RACE_GRACE as RACE_GRACE
from shared.db.types import utcnow
from shared.models import (
    AuthorizationCode,
    Connection,
    ConnectionStatus,
    RefreshToken,
    TokenFamily,
)
from shared.models import User as UserRow
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    User,
    authorization_code,
    exchange,
    introspect,
    oauth_error,
    obtain_tokens,
    refresh,
)

# Races of line 11: how many requests send one token at once, and how many times.
RACERS = 4
ROUNDS = 3


def assert_refused(response: httpx.Response, error: str = "invalid_grant") -> None:
    assert response.status_code == 400, response.text
    assert oauth_error(response) == error
    assert "access_token" not in response.json()


def refreshed(server: AuthServer, client: Client, token: str, **extra: str) -> dict:
    response = refresh(server, client, token, **extra)
    assert response.status_code == 200, response.text
    return response.json()


def refresh_row(server: AuthServer, token: str) -> RefreshToken:
    with server.sessions() as session:
        return session.exec(select(RefreshToken)
                            .where(RefreshToken.token_digest == server.digest(token))).one()


def update_refresh_row(server: AuthServer, token: str, **values) -> None:
    with server.sessions() as session, session.begin():
        row = session.get(RefreshToken, refresh_row(server, token).id)
        for name, value in values.items():
            setattr(row, name, value)


@pytest.fixture
def linked(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> Callable[..., tuple[Client, dict]]:
    """The first tokens (with a refresh token) of a new app with the given auth method."""

    def make(auth_method: str = "client_secret_basic",
             scope: str = "employee.info.read company.info.read offline_access"
             ) -> tuple[Client, dict]:
        client = new_app(auth_method=auth_method)
        tokens = obtain_tokens(auth_server, browser(signed_in=True),
                               AuthRequest(client, scope=scope), None)
        assert "refresh_token" in tokens
        return client, tokens

    return make


def test_refresh_rotates_and_keeps_scope(
    auth_server: AuthServer, linked: Callable[..., tuple[Client, dict]],
) -> None:
    client, first = linked("client_secret_post")
    second = refreshed(auth_server, client, first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == first["scope"]
    assert introspect(auth_server, client, second["access_token"])["active"] is True
    assert introspect(auth_server, client, first["refresh_token"]) == {"active": False}


def test_after_a_narrowing_a_refreshed_token_names_only_what_the_consent_grants(
    auth_server: AuthServer, linked: Callable[..., tuple[Client, dict]],
) -> None:
    """A narrowing drops scopes from the connection (the registry's route): the family
    still names them, the next access token does not (resource servers refuse them
    either way)."""
    client, first = linked("client_secret_post")
    claims = introspect(auth_server, client, first["access_token"])
    with auth_server.sessions() as session, session.begin():
        connection = session.get(Connection, uuid.UUID(claims["connection_id"]))
        assert connection is not None and "employee.info.read" in connection.scopes
        connection.scopes = [s for s in connection.scopes if s != "employee.info.read"]
    second = refreshed(auth_server, client, first["refresh_token"])
    assert set(second["scope"].split()) == {"company.info.read", "offline_access"}
    assert introspect(auth_server, client, second["access_token"])["scope"] == second["scope"]


def test_refresh_without_offline_access_is_not_issued(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    tokens = obtain_tokens(auth_server, browser(signed_in=True),
                           AuthRequest(new_app(), scope="employee.info.read"), None)
    assert "refresh_token" not in tokens


# ---- Line 10: reuse of a rotated refresh token -------------------------------------------


def test_line10_reused_refresh_token_revokes_family_not_consent(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    agent = browser(signed_in=True)
    request = AuthRequest(client)
    first = obtain_tokens(auth_server, agent, request, None)
    r1 = first["refresh_token"]
    second = refreshed(auth_server, client, r1)
    r2 = second["refresh_token"]
    # R1 comes back after the race grace (as if 2+ seconds later): stolen.
    update_refresh_row(auth_server, r1, rotated_at=utcnow() - RACE_GRACE - timedelta(seconds=1))

    assert_refused(refresh(auth_server, client, r1))
    assert_refused(refresh(auth_server, client, r2))
    for token in (first["access_token"], second["access_token"], r2):
        assert introspect(auth_server, client, token) == {"active": False}
    with auth_server.sessions() as session:
        family = session.get(TokenFamily, refresh_row(auth_server, r1).family_id)
        assert family.revoked_at is not None
        connection = session.get(Connection, family.connection_id)
        assert connection.status == ConnectionStatus.ACTIVE
        assert connection.revoked_at is None
    # The consent stays: the app gets a new code without asking the user again.
    again = agent.link(AuthRequest(client))
    assert again.pages == [] and "code" in again.params


def test_line10_reuse_within_the_race_grace_leaves_the_family_alone(
    auth_server: AuthServer, linked: Callable[..., tuple[Client, dict]],
) -> None:
    """A client that retries a refresh it lost the answer to is not treated as a thief."""
    client, first = linked()
    second = refreshed(auth_server, client, first["refresh_token"])
    assert_refused(refresh(auth_server, client, first["refresh_token"]))
    assert introspect(auth_server, client, second["access_token"])["active"] is True
    refreshed(auth_server, client, second["refresh_token"])


# ---- Line 11: two refreshes at the same moment -------------------------------------------


def test_line11_concurrent_refreshes_give_one_success_and_one_family(
    auth_server: AuthServer, linked: Callable[..., tuple[Client, dict]],
) -> None:
    """Several rounds, each with one token sent by several threads at the same moment."""
    client, first = linked()
    token = first["refresh_token"]
    family_id = refresh_row(auth_server, token).family_id
    for round_ in range(1, ROUNDS + 1):
        barrier = threading.Barrier(RACERS)

        def go(_: int, token: str = token, barrier: threading.Barrier = barrier
               ) -> httpx.Response:
            barrier.wait()
            return refresh(auth_server, client, token)

        with ThreadPoolExecutor(RACERS) as pool:
            responses = list(pool.map(go, range(RACERS)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [400] * (RACERS - 1), [r.text for r in responses]
        assert {oauth_error(r) for r in responses if r.status_code == 400} == {"invalid_grant"}
        token = next(r for r in responses if r.status_code == 200).json()["refresh_token"]
        with auth_server.sessions() as session:
            rows = session.exec(select(RefreshToken)
                                .where(RefreshToken.family_id == family_id)).all()
        # One new refresh token per round, in the one family; only the newest is live.
        assert len(rows) == 1 + round_
        assert [r.token_digest for r in rows if r.rotated_at is None] == [
            auth_server.digest(token)]
    with auth_server.sessions() as session:
        connection_id = session.get(TokenFamily, family_id).connection_id
        families = session.exec(select(func.count()).select_from(TokenFamily)
                                .where(TokenFamily.connection_id == connection_id)).one()
    assert families == 1
    last = refreshed(auth_server, client, token)
    assert introspect(auth_server, client, last["access_token"])["active"] is True


# ---- Line 12: refresh bound to its client and its scope ----------------------------------


@pytest.mark.parametrize("thief", ["post", "public", "first_party"])
def test_line12_refresh_with_another_clients_credentials_is_invalid_grant(
    auth_server: AuthServer, linked: Callable[..., tuple[Client, dict]], thief: str,
) -> None:
    _, first = linked()
    assert_refused(refresh(auth_server, auth_server.clients[thief], first["refresh_token"]))
    # The token is not rotated by the failed attempt: it is still its client's.
    assert refresh_row(auth_server, first["refresh_token"]).rotated_at is None


@pytest.mark.parametrize("scope", [
    "employee.info.read offline_access employee.payment.read",  # registered, not granted
    "employee.info offline_access",  # the write scope of a granted read scope
    "employee.bankaccount.read",  # not even registered
])
def test_line12_wider_scope_on_refresh_is_invalid_scope(
    auth_server: AuthServer, linked: Callable[..., tuple[Client, dict]], scope: str,
) -> None:
    client, first = linked()
    assert_refused(refresh(auth_server, client, first["refresh_token"], scope=scope),
                   "invalid_scope")
    assert refresh_row(auth_server, first["refresh_token"]).rotated_at is None


def test_line12_narrower_scope_on_refresh_is_granted(
    auth_server: AuthServer, linked: Callable[..., tuple[Client, dict]],
) -> None:
    client, first = linked()
    narrower = refreshed(auth_server, client, first["refresh_token"],
                         scope="company.info.read offline_access")
    assert narrower["scope"].split() == ["company.info.read", "offline_access"]
    claims = introspect(auth_server, client, narrower["access_token"])
    assert claims["scope"].split() == ["company.info.read", "offline_access"]


def test_narrower_refresh_without_offline_access_keeps_the_refresh_token(
    auth_server: AuthServer, linked: Callable[..., tuple[Client, dict]],
) -> None:
    """RFC 6749 section 6: a narrower scope narrows the access token; the new refresh
    token keeps the grant's scope, so the app does not lose its offline access."""
    client, first = linked()
    narrower = refreshed(auth_server, client, first["refresh_token"], scope="company.info.read")
    assert narrower["scope"] == "company.info.read"
    assert "refresh_token" in narrower
    full = refreshed(auth_server, client, narrower["refresh_token"])
    assert full["scope"] == first["scope"]


# ---- Line 13: lifetimes ------------------------------------------------------------------


def test_line13_refresh_token_lives_30_days_idle_within_absolute_life(
    auth_server: AuthServer, linked: Callable[..., tuple[Client, dict]],
) -> None:
    client, first = linked()
    row = refresh_row(auth_server, first["refresh_token"])
    now = utcnow()
    assert abs(row.expires_at - (now + timedelta(days=30))) < timedelta(minutes=1)
    second = refreshed(auth_server, client, first["refresh_token"])
    # Each rotation starts a new 30 days.
    newer = refresh_row(auth_server, second["refresh_token"])
    assert newer.expires_at >= row.expires_at
    with auth_server.sessions() as session:
        family = session.get(TokenFamily, row.family_id)
        assert family.expires_at > now + timedelta(days=30)


def test_line13_refresh_unused_for_30_days_is_invalid_grant(
    auth_server: AuthServer, linked: Callable[..., tuple[Client, dict]],
) -> None:
    client, first = linked()
    update_refresh_row(auth_server, first["refresh_token"],
                       expires_at=utcnow() - timedelta(seconds=1))
    assert_refused(refresh(auth_server, client, first["refresh_token"]))
    assert introspect(auth_server, client, first["refresh_token"]) == {"active": False}


def test_line13_refresh_past_absolute_lifetime_is_invalid_grant(
    auth_server: AuthServer, linked: Callable[..., tuple[Client, dict]],
) -> None:
    client, first = linked()
    second = refreshed(auth_server, client, first["refresh_token"])
    family_id = refresh_row(auth_server, second["refresh_token"]).family_id
    with auth_server.sessions() as session, session.begin():
        session.get(TokenFamily, family_id).expires_at = utcnow() - timedelta(seconds=1)
    # The refresh token's own 30 days are not over; the family's life is.
    assert refresh_row(auth_server, second["refresh_token"]).expires_at > utcnow()
    assert_refused(refresh(auth_server, client, second["refresh_token"]))
    assert introspect(auth_server, client, second["access_token"]) == {"active": False}


def test_refresh_after_the_user_is_deactivated_is_invalid_grant(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
) -> None:
    client = auth_server.clients["basic"]
    user = new_user()
    tokens = obtain_tokens(auth_server, browser(), AuthRequest(client), user)
    with auth_server.sessions() as session, session.begin():
        session.get(UserRow, uuid.UUID(user.id)).active = False
    assert_refused(refresh(auth_server, client, tokens["refresh_token"]))
    assert introspect(auth_server, client, tokens["access_token"]) == {"active": False}


def test_code_of_a_connection_revoked_meanwhile_is_invalid_grant(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    request = AuthRequest(new_app())
    code = authorization_code(browser(signed_in=True), request, None)
    with auth_server.sessions() as session, session.begin():
        row = session.exec(select(AuthorizationCode)
                           .where(AuthorizationCode.code_digest == auth_server.digest(code))).one()
        connection = session.get(Connection, row.connection_id)
        connection.status = ConnectionStatus.REVOKED
        connection.revoked_at = utcnow()
    assert_refused(exchange(auth_server, request, code))


def test_a_refresh_counts_as_use_of_the_connection(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    import redis as redis_client

    from shared.last_used import PENDING_KEY

    client = new_app()
    tokens = obtain_tokens(auth_server, browser(signed_in=True), AuthRequest(client), None)
    connection_id = introspect(auth_server, client, tokens["access_token"])["connection_id"]
    store = redis_client.Redis.from_url(auth_server.redis_url)
    assert store.hget(PENDING_KEY, connection_id) is None
    refreshed(auth_server, client, tokens["refresh_token"])
    assert store.hget(PENDING_KEY, connection_id) is not None


def test_a_connection_past_its_expiry_is_refused_before_the_job_runs(
    auth_server: AuthServer, linked: Callable[..., tuple[Client, dict]],
) -> None:
    client, tokens = linked()
    connection_id = introspect(auth_server, client, tokens["access_token"])["connection_id"]
    with auth_server.sessions() as session, session.begin():
        connection = session.get(Connection, uuid.UUID(connection_id))
        connection.expires_at = utcnow() + timedelta(days=1)
    # Not yet expired: it works.
    tokens = refreshed(auth_server, client, tokens["refresh_token"])
    assert introspect(auth_server, client, tokens["access_token"])["active"] is True
    # Its expiry passes; the worker's job has not run, so the status still says active.
    with auth_server.sessions() as session, session.begin():
        connection = session.get(Connection, uuid.UUID(connection_id))
        connection.expires_at = utcnow() - timedelta(seconds=1)
        assert connection.status == ConnectionStatus.ACTIVE
    response = refresh(auth_server, client, tokens["refresh_token"])
    assert_refused(response)
    assert "expired" in response.json()["error_description"]
    assert introspect(auth_server, client, tokens["access_token"]) == {"active": False}
    assert introspect(auth_server, client, tokens["refresh_token"]) == {"active": False}
    # A suspension still says so (it takes precedence over expiry).
    with auth_server.sessions() as session, session.begin():
        connection = session.get(Connection, uuid.UUID(connection_id))
        connection.status = ConnectionStatus.SUSPENDED
    response = refresh(auth_server, client, tokens["refresh_token"])
    assert_refused(response)
    assert "suspended" in response.json()["error_description"]
