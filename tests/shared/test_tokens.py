"""Access-token verification: format, signature, claims, status checks, FastAPI glue.

The verifier reads through its own sessions and Redis connections, so the rows it must
see are committed (`committing_sessions` empties every table after each test).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, FastAPI
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from shared.auth_deps import PrincipalDep, close_verifier, require_scope
from shared.errors import Unavailable, install_error_handlers
from shared.es256 import jws_signature
from shared.models import (
    App,
    AppStatus,
    Connection,
    ConnectionStatus,
    SigningKey,
    TokenFamily,
    User,
    UserTemplate,
)
from shared.runtime import Runtime
from shared.signing import Signer, create_signing_key
from shared.status import Subject, publish, status_key
from shared.status_mirror import PREFIX
from shared.tokens import InvalidToken, Principal, TokenVerifier
from tests.fixtures import factories as f

INVALID = 'Bearer error="invalid_token"'


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value).encode())


@dataclass
class Key:
    kid: str
    private: ec.EllipticCurvePrivateKey

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        """A compact ES256 JWS (header defaults: ES256, at+jwt, this kid)."""
        head = {"alg": "ES256", "typ": "at+jwt", "kid": self.kid, **header}
        signing_input = f"{b64json(head)}.{b64json(claims)}"
        # Low-S, as Koppel's signer writes (shared/es256.py).
        der = self.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        return f"{signing_input}.{b64(jws_signature(der))}"


def public_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": b64(numbers.x.to_bytes(32, "big")), "y": b64(numbers.y.to_bytes(32, "big"))}


def add_key(sessions: sessionmaker[Session], runtime: Runtime) -> Key:
    """A new published ES256 key, committed."""
    private = ec.generate_private_key(ec.SECP256R1())
    kid = f"test-{secrets.token_hex(6)}"
    with sessions() as session:
        f.make_signing_key(session, runtime.box, kid=kid, public_jwk=public_jwk(private, kid))
        session.commit()
    return Key(kid, private)


@dataclass
class World:
    key: Key
    user: User
    third_party: App
    connection: Connection
    connection_family: TokenFamily
    first_party: App
    user_family: TokenFamily
    service_app: App
    issuer: str
    audience: str

    def base(self, **claims: Any) -> dict[str, Any]:
        """Valid claims; `claims` add to or replace the defaults."""
        now = int(time.time())
        return {"iss": self.issuer, "aud": self.audience,
                "scope": "company.info.read employee.info", "exp": now + 900, "iat": now,
                "jti": secrets.token_urlsafe(12), **claims}

    def connection_claims(self, **claims: Any) -> dict[str, Any]:
        return self.base(**{
            "sub": str(self.user.id), "client_id": self.third_party.client_id,
            "environment_id": str(self.user.environment_id),
            "connection_id": str(self.connection.id),
            "debtor_id": str(self.connection.debtor_id),
            "jti": f"{self.connection_family.id}.{secrets.token_urlsafe(12)}", **claims,
        })

    def user_claims(self, **claims: Any) -> dict[str, Any]:
        return self.base(**{
            "sub": str(self.user.id), "client_id": self.first_party.client_id,
            "environment_id": str(self.user.environment_id),
            "jti": f"{self.user_family.id}.{secrets.token_urlsafe(12)}", **claims,
        })

    def app_claims(self, **claims: Any) -> dict[str, Any]:
        client_id = self.service_app.client_id
        return self.base(**{"sub": client_id, "client_id": client_id,
                            "scope": "webhooks.manage", **claims})


@pytest.fixture
def world(committing_sessions: sessionmaker[Session], runtime: Runtime,
          redis_client: redis.Redis) -> World:
    """A user with a third-party connection, a first-party login and a service app."""
    key = add_key(committing_sessions, runtime)
    with committing_sessions() as session:
        environment = f.make_environment(session)
        debtor = f.make_debtor(session, environment)
        user = f.make_user(session, environment, template=UserTemplate.MASTER_CLIENT,
                           debtor=debtor)
        third_party = f.make_app(session)
        connection = f.make_connection(session, user, third_party)
        connection_family = f.make_token_family(session, third_party, user,
                                                connection_id=connection.id)
        first_party = f.make_app(session, first_party=True, environment=environment)
        user_family = f.make_token_family(session, first_party, user)
        service_app = f.make_app(session, grant_types=["client_credentials"])
        session.commit()
    settings = runtime.settings
    return World(key, user, third_party, connection, connection_family, first_party,
                 user_family, service_app, settings.issuer, settings.api_audience)


@pytest.fixture(params=["mirror", "direct"])
async def verifier(request: pytest.FixtureRequest, runtime: Runtime
                   ) -> AsyncIterator[TokenVerifier]:
    """The verifier with the in-process status mirror, and without (Redis every call)."""
    verifier = TokenVerifier.from_runtime(runtime, mirror=request.param == "mirror")
    yield verifier
    verifier.close()


def change(sessions: sessionmaker[Session], model: type, ident: Any, **values: Any) -> None:
    """Update one row and commit (the database half of a status change)."""
    with sessions() as session:
        row = session.get(model, ident)
        for name, value in values.items():
            setattr(row, name, value)
        session.add(row)
        session.commit()


async def warm(verifier: TokenVerifier, *tokens: str) -> None:
    """Verify each token three times: after that the mirror (if any) knows it active."""
    for token in tokens:
        for _ in range(3):
            assert await verifier.verify(token)


async def rejected(verifier: TokenVerifier, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    error = caught.value
    assert error.status == 401
    assert error.headers == {"WWW-Authenticate": INVALID}
    return error


# --- valid tokens -------------------------------------------------------------------------


async def test_a_connection_token_verifies(verifier: TokenVerifier, world: World) -> None:
    claims = world.connection_claims()
    principal = await verifier.verify(world.key.sign(claims))
    assert principal == Principal(
        kind="connection", user_id=world.user.id, client_id=world.third_party.client_id,
        scopes=frozenset({"company.info.read", "employee.info"}),
        environment_id=world.user.environment_id, connection_id=world.connection.id,
        debtor_id=world.connection.debtor_id, family_id=world.connection_family.id,
        jti=claims["jti"], claims=claims,
    )
    assert principal.claims == claims
    # Twice: the second answer may come from the mirror.
    assert (await verifier.verify(world.key.sign(world.connection_claims()))).kind == "connection"


async def test_a_first_party_user_token_verifies(verifier: TokenVerifier, world: World) -> None:
    principal = await verifier.verify(world.key.sign(world.user_claims()))
    assert principal.kind == "user"
    assert principal.user_id == world.user.id
    assert principal.family_id == world.user_family.id
    assert principal.connection_id is None and principal.debtor_id is None
    assert principal.client_id == world.first_party.client_id


async def test_an_app_token_verifies(verifier: TokenVerifier, world: World) -> None:
    principal = await verifier.verify(world.key.sign(world.app_claims()))
    assert principal.kind == "app"
    assert principal.user_id is None and principal.environment_id is None
    assert principal.family_id is None
    assert principal.client_id == world.service_app.client_id
    assert principal.has_scope("webhooks.manage")


async def test_a_token_from_the_auth_services_signer_verifies(
    verifier: TokenVerifier, world: World, committing_sessions: sessionmaker[Session],
    runtime: Runtime,
) -> None:
    with committing_sessions() as session:
        create_signing_key(session, runtime.box, "ES256")
        session.commit()
        token = Signer(runtime.box).sign(session, world.connection_claims(), alg="ES256",
                                         typ="at+jwt")
    assert (await verifier.verify(token)).connection_id == world.connection.id


@pytest.mark.parametrize("typ", ["AT+JWT", "application/at+jwt"])
async def test_typ_is_case_insensitive_and_may_have_the_media_type_prefix(
    verifier: TokenVerifier, world: World, typ: str
) -> None:
    assert await verifier.verify(world.key.sign(world.app_claims(), typ=typ))


async def test_aud_may_be_a_list_containing_the_api(verifier: TokenVerifier, world: World
                                                    ) -> None:
    claims = world.app_claims(aud=["other", world.audience])
    assert await verifier.verify(world.key.sign(claims))


async def test_write_scope_implies_read(verifier: TokenVerifier, world: World) -> None:
    principal = await verifier.verify(world.key.sign(world.connection_claims()))
    assert principal.has_scope("employee.info.read")
    assert principal.has_scope("employee.info")
    assert principal.has_scope("company.info.read")
    assert not principal.has_scope("company.info")
    assert not principal.has_scope("employee.payment.read")


# --- forged and malformed tokens ----------------------------------------------------------


async def test_alg_none_is_rejected(verifier: TokenVerifier, world: World) -> None:
    header = {"alg": "none", "typ": "at+jwt", "kid": world.key.kid}
    token = f"{b64json(header)}.{b64json(world.app_claims())}."
    await rejected(verifier, token)
    # Also with a (meaningless) 64-byte signature in place.
    await rejected(verifier, token + b64(bytes(64)))


async def test_hs256_signed_with_the_public_key_is_rejected(
    verifier: TokenVerifier, world: World
) -> None:
    jwk = public_jwk(world.key.private, world.key.kid)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": world.key.kid}
    signing_input = f"{b64json(header)}.{b64json(world.app_claims())}"
    pem = world.key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (json.dumps(jwk).encode(), pem):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        await rejected(verifier, f"{signing_input}.{b64(mac)}")
        # Padded to the length of an ES256 signature, still no.
        await rejected(verifier, f"{signing_input}.{b64(mac + mac)}")


async def test_other_algorithms_are_rejected(verifier: TokenVerifier, world: World) -> None:
    for alg in ("RS256", "ES384", "EdDSA", "es256", None):
        header = {"typ": "at+jwt", "kid": world.key.kid} | ({"alg": alg} if alg else {})
        signing_input = f"{b64json(header)}.{b64json(world.app_claims())}"
        der = world.key.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        sig = b64(jws_signature(der))
        await rejected(verifier, f"{signing_input}.{sig}")


async def test_a_foreign_key_with_a_published_kid_is_rejected(
    verifier: TokenVerifier, world: World
) -> None:
    impostor = Key(world.key.kid, ec.generate_private_key(ec.SECP256R1()))
    await rejected(verifier, impostor.sign(world.connection_claims()))


async def test_an_unknown_kid_is_rejected(verifier: TokenVerifier, world: World) -> None:
    await rejected(verifier, Key("nope", world.key.private).sign(world.app_claims()))
    await rejected(verifier, world.key.sign(world.app_claims(), kid=None))


async def test_a_tampered_payload_is_rejected(verifier: TokenVerifier, world: World) -> None:
    token = world.key.sign(world.app_claims(scope="webhooks.manage"))
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "webhooks.manage directory.manage"
    await rejected(verifier, f"{header}.{b64json(claims)}.{signature}")
    # A flipped bit in the signature, and a signature from another token.
    flipped = bytearray(base64.urlsafe_b64decode(signature + "=="))
    flipped[10] ^= 1
    await rejected(verifier, f"{header}.{payload}.{b64(bytes(flipped))}")
    other = world.key.sign(world.app_claims()).split(".")[2]
    await rejected(verifier, f"{header}.{payload}.{other}")


@pytest.mark.parametrize("token", [
    "", "abc", "a.b", "a.b.c.d", "é.é.é", "a.b." + "A" * 86, "x" * 10_000,
])
async def test_garbage_is_rejected(verifier: TokenVerifier, token: str) -> None:
    await rejected(verifier, token)


async def test_a_non_canonical_signature_encoding_is_rejected(
    verifier: TokenVerifier, world: World
) -> None:
    token = world.key.sign(world.app_claims())
    assert await verifier.verify(token)
    last = token[-1]
    # The last base64url character of a 64-byte signature carries 2 bits; its 4 unused
    # bits set gives the same bytes but another token string.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    variant = alphabet[alphabet.index(last) | 0b1111]
    if variant != last:
        await rejected(verifier, token[:-1] + variant)


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "id_token+jwt", "application/jwt"])
async def test_a_wrong_typ_is_rejected(verifier: TokenVerifier, world: World, typ: str | None
                                       ) -> None:
    await rejected(verifier, world.key.sign(world.app_claims(), typ=typ))


async def test_crit_headers_are_rejected(verifier: TokenVerifier, world: World) -> None:
    await rejected(verifier, world.key.sign(world.app_claims(), crit=["exp"]))


async def test_wrong_audience_is_rejected(verifier: TokenVerifier, world: World) -> None:
    for aud in ("other-api", ["other-api"], [], None, world.audience.upper()):
        await rejected(verifier, world.key.sign(world.connection_claims(aud=aud)))


async def test_wrong_issuer_is_rejected(verifier: TokenVerifier, world: World) -> None:
    for iss in (world.issuer + "/", "https://evil.example", None):
        await rejected(verifier, world.key.sign(world.connection_claims(iss=iss)))


async def test_expiry_allows_a_small_leeway_only(verifier: TokenVerifier, world: World) -> None:
    now = int(time.time())
    assert await verifier.verify(world.key.sign(world.app_claims(exp=now - 2)))
    error = await rejected(verifier, world.key.sign(world.app_claims(exp=now - 60)))
    assert "expired" in error.detail
    await rejected(verifier, world.key.sign(world.app_claims(iat=now + 120)))
    await rejected(verifier, world.key.sign(world.app_claims(nbf=now + 120)))


@pytest.mark.parametrize("kind", ["connection", "user", "app"])
@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "client_id", "scope", "exp", "iat",
                                   "jti"])
async def test_missing_claims_are_rejected(
    verifier: TokenVerifier, world: World, kind: str, claim: str
) -> None:
    claims = getattr(world, f"{kind}_claims")()
    del claims[claim]
    await rejected(verifier, world.key.sign(claims))


@pytest.mark.parametrize("changes", [
    {"exp": "9999999999"}, {"exp": True}, {"iat": None}, {"scope": ["a"]}, {"sub": 5},
    {"client_id": ""}, {"jti": 7}, {"connection_id": "not-a-uuid"}, {"debtor_id": None},
    {"environment_id": 3}, {"jti": "not-a-uuid.abc"}, {"jti": "no-family"},
    {"sub": "not-a-uuid"},
])
async def test_claims_of_the_wrong_shape_are_rejected(
    verifier: TokenVerifier, world: World, changes: dict[str, Any]
) -> None:
    await rejected(verifier, world.key.sign(world.connection_claims(**changes)))


async def test_an_app_token_must_be_about_its_own_client(verifier: TokenVerifier, world: World
                                                         ) -> None:
    await rejected(verifier, world.key.sign(world.app_claims(sub=str(world.user.id))))
    # A connection id without an environment is not an app token either.
    claims = world.app_claims(connection_id=str(world.connection.id))
    await rejected(verifier, world.key.sign(claims))


async def test_a_payload_that_is_not_an_object_is_rejected(verifier: TokenVerifier,
                                                           world: World) -> None:
    header = {"alg": "ES256", "typ": "at+jwt", "kid": world.key.kid}
    signing_input = f"{b64json(header)}.{b64json([1, 2])}"
    signature = b64(jws_signature(world.key.private.sign(signing_input.encode(),
                                                         ec.ECDSA(hashes.SHA256()))))
    await rejected(verifier, f"{signing_input}.{signature}")


# --- status: no window of stale acceptance ------------------------------------------------


async def test_a_revoked_connection_fails_on_the_next_call(
    verifier: TokenVerifier, world: World, committing_sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    token = world.key.sign(world.connection_claims())
    await warm(verifier, token)
    change(committing_sessions, Connection, world.connection.id,
           status=ConnectionStatus.REVOKED)
    publish(redis_client, [(Subject.CONNECTION, world.connection.id, False)])
    error = await rejected(verifier, token)
    assert "revoked" in error.detail
    await rejected(verifier, world.key.sign(world.connection_claims()))


async def test_a_flushed_redis_never_reads_as_active(
    verifier: TokenVerifier, world: World, committing_sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    token = world.key.sign(world.connection_claims())
    await warm(verifier, token)
    # The writer committed but died before publishing; then Redis lost its data.
    change(committing_sessions, Connection, world.connection.id,
           status=ConnectionStatus.REVOKED)
    redis_client.flushdb()
    redis_client.ping()  # the flush's invalidation has left Redis (shared/status.py)
    await rejected(verifier, token)
    # The answer loaded from the database is now cached as inactive.
    key = status_key(Subject.CONNECTION, world.connection.id)
    assert redis_client.get(key) == b"0"
    await rejected(verifier, token)


async def test_a_suspended_connection_works_again_once_resumed(
    verifier: TokenVerifier, world: World, committing_sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    token = world.key.sign(world.connection_claims())
    await warm(verifier, token)
    change(committing_sessions, Connection, world.connection.id,
           status=ConnectionStatus.SUSPENDED)
    publish(redis_client, [(Subject.CONNECTION, world.connection.id, False)])
    await rejected(verifier, token)
    change(committing_sessions, Connection, world.connection.id, status=ConnectionStatus.ACTIVE)
    publish(redis_client, [(Subject.CONNECTION, world.connection.id, True)])
    assert await verifier.verify(token)
    assert await verifier.verify(token)


async def test_a_revoked_token_family_fails(
    verifier: TokenVerifier, world: World, committing_sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    connection_token = world.key.sign(world.connection_claims())
    user_token = world.key.sign(world.user_claims())
    await warm(verifier, connection_token, user_token)
    for family in (world.connection_family, world.user_family):
        change(committing_sessions, TokenFamily, family.id, revoked_at=f.utcnow())
        publish(redis_client, [(Subject.FAMILY, family.id, False)])
    await rejected(verifier, connection_token)
    await rejected(verifier, user_token)
    # The connection itself stays usable for a new family (the consent is not revoked).
    with committing_sessions() as session:
        fresh = f.make_token_family(session, world.third_party, world.user,
                                    connection_id=world.connection.id)
        session.commit()
    assert await verifier.verify(world.key.sign(world.connection_claims(
        jti=f"{fresh.id}.{secrets.token_urlsafe(8)}")))


async def test_a_deactivated_user_loses_first_party_access(
    verifier: TokenVerifier, world: World, committing_sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    token = world.key.sign(world.user_claims())
    await warm(verifier, token)
    change(committing_sessions, User, world.user.id, active=False)
    publish(redis_client, [(Subject.USER, world.user.id, False)])
    await rejected(verifier, token)


async def test_a_suspended_app_loses_client_credentials_access(
    verifier: TokenVerifier, world: World, committing_sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    token = world.key.sign(world.app_claims())
    await warm(verifier, token)
    change(committing_sessions, App, world.service_app.id, status=AppStatus.SUSPENDED)
    publish(redis_client, [(Subject.APP, world.service_app.client_id, False)])
    await rejected(verifier, token)


async def test_unknown_subjects_are_not_active(verifier: TokenVerifier, world: World) -> None:
    claims = world.connection_claims(connection_id="00000000-0000-4000-8000-000000000000")
    await rejected(verifier, world.key.sign(claims))


async def test_the_mirror_answers_repeated_calls_without_redis(
    runtime: Runtime, world: World, committing_sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    verifier = TokenVerifier.from_runtime(runtime)
    try:
        token = world.key.sign(world.connection_claims())
        for _ in range(3):  # miss and fill, miss and read, then known active
            assert await verifier.verify(token)

        class NoRedis:
            async def mget(self, keys: list[str]) -> None:
                raise AssertionError("the mirror should have answered")

        real, verifier._redis = verifier._redis, NoRedis()
        assert await verifier.verify(token)
        verifier._redis = real
        change(committing_sessions, Connection, world.connection.id,
               status=ConnectionStatus.REVOKED)
        publish(redis_client, [(Subject.CONNECTION, world.connection.id, False)])
        await rejected(verifier, token)
    finally:
        verifier.close()


async def test_an_unreachable_status_cache_answers_503_not_access(
    runtime: Runtime, world: World
) -> None:
    down = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    verifier = TokenVerifier(issuer=world.issuer, audience=world.audience,
                             session_factory=runtime.async_session, redis=down)
    try:
        with pytest.raises(Unavailable) as caught:
            await verifier.verify(world.key.sign(world.connection_claims()))
        assert caught.value.status == 503
    finally:
        await down.aclose()


def test_the_mirror_tracks_the_status_key_prefix() -> None:
    assert all(status_key(subject, "x").startswith(PREFIX) for subject in Subject)


# --- signing keys -------------------------------------------------------------------------


async def test_an_unknown_kid_refetches_the_keys(
    runtime: Runtime, world: World, committing_sessions: sessionmaker[Session]
) -> None:
    verifier = TokenVerifier.from_runtime(runtime, mirror=False, key_refetch_interval=0.2)
    assert await verifier.verify(world.key.sign(world.app_claims()))
    assert verifier.keys.loads == 1
    time.sleep(0.25)
    newer = add_key(committing_sessions, runtime)
    assert await verifier.verify(newer.sign(world.app_claims()))
    assert verifier.keys.loads == 2
    # Garbage kids do not reach the database more than once per interval.
    await asyncio.gather(*(
        rejected(verifier, Key(f"junk-{secrets.token_hex(4)}", newer.private)
                 .sign(world.app_claims()))
        for _ in range(20)))
    assert verifier.keys.loads <= 4
    # One after another, each waits for the next allowed reload.
    before, started = verifier.keys.loads, time.monotonic()
    for _ in range(3):
        await rejected(verifier, Key(f"junk-{secrets.token_hex(4)}", newer.private)
                       .sign(world.app_claims()))
    assert verifier.keys.loads - before <= (time.monotonic() - started) / 0.2 + 1


async def test_a_key_created_right_after_a_reload_is_accepted(
    runtime: Runtime, world: World, committing_sessions: sessionmaker[Session]
) -> None:
    """A rotation within the refetch interval: the new key's first tokens wait for the
    next reload instead of being refused."""
    verifier = TokenVerifier.from_runtime(runtime, mirror=False, key_refetch_interval=0.5)
    assert await verifier.verify(world.key.sign(world.app_claims()))
    newer = add_key(committing_sessions, runtime)
    started = time.monotonic()
    results = await asyncio.gather(*(verifier.verify(newer.sign(world.app_claims()))
                                     for _ in range(10)))
    assert all(results)
    assert verifier.keys.loads == 2  # ten callers, one reload
    assert time.monotonic() - started < 2


async def test_a_retired_key_stays_until_its_publication_ends(
    runtime: Runtime, world: World, committing_sessions: sessionmaker[Session]
) -> None:
    change(committing_sessions, SigningKey, world.key.kid, active=False,
           publish_until=f.utcnow() - timedelta(seconds=1))
    verifier = TokenVerifier.from_runtime(runtime, mirror=False)
    await rejected(verifier, world.key.sign(world.app_claims()))


# --- the FastAPI dependency ---------------------------------------------------------------


def build_app(runtime: Runtime) -> FastAPI:
    """A tiny resource server: one route per kind of protection."""
    app = FastAPI()
    install_error_handlers(app)
    app.state.runtime = runtime

    @app.get("/me")
    async def me(caller: PrincipalDep) -> dict[str, str]:
        return {"kind": caller.kind, "client_id": caller.client_id}

    @app.get("/employees")
    async def employees(
        caller: Annotated[Principal, Depends(require_scope("employee.info.read"))],
    ) -> dict[str, str]:
        return {"kind": caller.kind}

    @app.get("/payments")
    async def payments(
        caller: Annotated[Principal, Depends(require_scope("employee.payment.read"))],
    ) -> dict[str, str]:
        return {"kind": caller.kind}

    return app


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
    close_verifier(app)


def bearer(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


async def test_no_token_answers_401_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/employees")
    assert response.status_code == 401
    # Both schemes, and the algorithms a DPoP proof may use (RFC 9449 section 7.1).
    assert response.headers["www-authenticate"] == (
        'Bearer, DPoP algs="ES256 PS256 EdDSA Ed25519"')
    assert response.headers["content-type"] == "application/problem+json"
    response = await client.get("/employees", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert response.status_code == 401


async def test_a_token_in_the_query_string_is_refused(client: httpx.AsyncClient, world: World
                                                      ) -> None:
    token = world.key.sign(world.connection_claims())
    response = await client.get("/employees", params={"access_token": token})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    response = await client.get("/employees", params={"access_token": token},
                                headers=bearer(token))
    assert response.status_code == 401


async def test_an_invalid_token_answers_401_invalid_token(client: httpx.AsyncClient,
                                                          world: World) -> None:
    response = await client.get("/me", headers=bearer(world.key.sign(world.app_claims(
        aud="elsewhere"))))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        INVALID + ', DPoP algs="ES256 PS256 EdDSA Ed25519"')
    body = response.json()
    assert body["status"] == 401 and body["type"] == "urn:koppel:problem:invalid-token"


async def test_the_scheme_is_case_insensitive(client: httpx.AsyncClient, world: World) -> None:
    token = world.key.sign(world.connection_claims())
    response = await client.get("/me", headers=bearer(token, "bearer"))
    assert response.status_code == 200
    assert response.json() == {"kind": "connection", "client_id": world.third_party.client_id}


async def test_write_scope_grants_the_read_route(client: httpx.AsyncClient, world: World
                                                 ) -> None:
    token = world.key.sign(world.connection_claims(scope="employee.info"))
    response = await client.get("/employees", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"kind": "connection"}


async def test_a_missing_scope_answers_403_naming_it(client: httpx.AsyncClient, world: World
                                                     ) -> None:
    token = world.key.sign(world.connection_claims())
    response = await client.get("/payments", headers=bearer(token))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["required_scope"] == "employee.payment.read"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert 'scope="employee.payment.read"' in response.headers["www-authenticate"]


async def test_the_openapi_document_declares_the_bearer_scheme(runtime: Runtime) -> None:
    document = build_app(runtime).openapi()
    schemes = document["components"]["securitySchemes"]
    assert [scheme["scheme"] for scheme in schemes.values()] == ["bearer"]
    assert document["paths"]["/employees"]["get"]["security"]


def test_require_scope_refuses_unknown_scopes() -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        require_scope("employee.salaries")

