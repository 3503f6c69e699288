"""Signed audit checkpoints (issue 14, finding 1): the accountant's endpoint, the JWS
checked with joserfc against the published attestation JWKS, the periodic job, and the
attestation key never taken for an access token."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import httpx
from joserfc import jws
from joserfc.jwk import KeySet
from sqlmodel import select

from services.auth.app import create_app as create_auth
from services.registry.jobs import audit_checkpoint
from services.sync.app import create_app as create_sync
from shared.attestation import sign_attestation
from shared.audit import Actor, append
from shared.audit_checkpoints import (
    CHECKPOINT_TYP,
    checkpoint_due,
    due_environments,
    make_checkpoint,
)
from shared.db.types import utcnow
from shared.models import AuditCheckpoint, AuditHead
from shared.runtime import Runtime
from shared.vault import KeyRing, SecretBox
from tests.services.conftest import running
from tests.services.registry.conftest import ALL_FIRST_PARTY, World, bearer
from tests.services.registry.support import accountant

PATH = "/v1/environment/audit-checkpoints"


def _append(world: World, environment_id: uuid.UUID, n: int = 2) -> None:
    with world.sessions() as session:
        for _ in range(n):
            append(session, environment_id, "connection.revoked", Actor("system"), "connection")
        session.commit()


def _checkpoint(world: World, keyring: KeyRing, environment_id: uuid.UUID) -> AuditCheckpoint:
    with world.sessions() as session, session.begin():
        row = make_checkpoint(session, keyring, environment_id)
        assert row is not None
        session.expunge(row)
        return row


async def test_the_accountant_lists_its_environments_checkpoints_newest_first(
    client: httpx.AsyncClient, world: World, keyring: KeyRing
) -> None:
    made = []
    for _ in range(3):
        _append(world, world.a.environment.id)
        made.append(_checkpoint(world, keyring, world.a.environment.id))
    _append(world, world.b.environment.id)
    in_b = _checkpoint(world, keyring, world.b.environment.id)

    first = await client.get(PATH, params={"limit": 2}, headers=accountant(world))
    assert first.status_code == 200, first.text
    assert [c["seq"] for c in first.json()["data"]] == [6, 4]
    rest = await client.get(PATH, params={"cursor": first.json()["next_cursor"]},
                            headers=accountant(world))
    assert [c["id"] for c in rest.json()["data"]] == [str(made[0].id)]
    assert rest.json()["next_cursor"] is None
    assert first.json()["data"][0]["jws"] == made[2].jws

    # Another environment's accountant sees only its own; other templates nothing.
    other = await client.get(PATH, headers=accountant(world, world.b))
    assert [c["id"] for c in other.json()["data"]] == [str(in_b.id)]
    assert all(c["environment_id"] == str(world.b.environment.id)
               for c in other.json()["data"])
    for template in ("master_client", "company", "hr_manager", "employee"):
        token = world.user_token(world.a.users[template])
        assert (await client.get(PATH, headers=bearer(token))).status_code == 403
    connection = world.connection_token(world.a.connections[0])
    assert (await client.get(PATH, headers=bearer(connection))).status_code == 403
    assert (await client.get(PATH, params={"cursor": "x.y"},
                             headers=accountant(world))).status_code == 400


async def test_a_checkpoint_verifies_with_the_published_attestation_jwks(
    client: httpx.AsyncClient, world: World, keyring: KeyRing
) -> None:
    _append(world, world.a.environment.id, 3)
    before = int(time.time())
    _checkpoint(world, keyring, world.a.environment.id)
    listed = (await client.get(PATH, headers=accountant(world))).json()["data"][0]

    async with running(create_auth(world.settings)) as auth:
        discovery = (await auth.get("/.well-known/openid-configuration")).json()
        jwks_uri = discovery["attestation_jwks_uri"]
        assert jwks_uri == f"{world.settings.issuer}/.well-known/attestation-jwks.json"
        attestation = (await auth.get(jwks_uri.removeprefix(world.settings.issuer))).json()
        tokens_jwks = (await auth.get("/.well-known/jwks.json")).json()

    signed = jws.deserialize_compact(listed["jws"], KeySet.import_key_set(attestation),
                                     algorithms=["ES256"])
    header = signed.headers()
    assert header["typ"] == CHECKPOINT_TYP == "audit-checkpoint+jwt"
    assert header["kid"] == listed["kid"]
    claims = json.loads(signed.payload)
    with world.sessions() as session:
        head = session.get(AuditHead, world.a.environment.id)
        assert head is not None
        assert claims == {"environment_id": str(world.a.environment.id), "seq": head.seq,
                          "hash": head.hash, "iat": claims["iat"]}
    assert before <= claims["iat"] <= int(time.time())
    # The token JWKS never carries an attestation key.
    assert listed["kid"] not in {k["kid"] for k in tokens_jwks["keys"]}


async def test_an_access_token_signed_with_the_attestation_key_is_refused(
    client: httpx.AsyncClient, world: World, keyring: KeyRing
) -> None:
    user = world.a.users["accountant"]
    now = int(time.time())
    family_token = world.user_token(user)  # a real token: the control
    with world.sessions() as session:
        claims = {"iss": world.settings.issuer, "aud": world.settings.api_audience,
                  "iat": now, "exp": now + 900, "sub": str(user.id),
                  "client_id": world.first_party.client_id, "scope": ALL_FIRST_PARTY,
                  "environment_id": str(user.environment_id),
                  "jti": f"{uuid.uuid4()}.forged"}
        forged = sign_attestation(session, SecretBox(keyring), "at+jwt", claims)
        session.commit()
    assert (await client.get("/v1/environment/audit-events",
                             headers=bearer(family_token))).status_code == 200
    refused = await client.get("/v1/environment/audit-events", headers=bearer(forged))
    assert refused.status_code == 401

    connection = world.a.connections[0]
    real = world.connection_token(connection)
    forged_connection = jws.extract_compact(real.encode()).payload
    with world.sessions() as session:
        forged = sign_attestation(session, keyring, "at+jwt", json.loads(forged_connection))
        session.commit()
    async with running(create_sync(world.settings)) as sync:
        assert (await sync.get("/v1/companies", headers=bearer(real))).status_code == 200
        assert (await sync.get("/v1/companies", headers=bearer(forged))).status_code == 401


async def test_the_periodic_job_checkpoints_new_and_moved_chains_once_per_interval(
    world: World, keyring: KeyRing, runtime: Runtime
) -> None:
    interval = timedelta(seconds=runtime.settings.audit_checkpoint_interval)
    a, b = world.a.environment.id, world.b.environment.id
    _append(world, a)
    assert await audit_checkpoint({"runtime": runtime}) == 1  # a new chain: at once
    assert checkpoint_due(world.sessions, keyring, interval) == 0  # nothing moved
    _append(world, a)
    _append(world, b)
    assert checkpoint_due(world.sessions, keyring, interval) == 1  # b is new; a waits
    with world.sessions() as session:
        assert due_environments(session, interval) == []
        assert due_environments(session, interval, utcnow() + interval) == [a]
        assert due_environments(session, interval, utcnow() + 2 * interval) == [a]
        rows = session.exec(select(AuditCheckpoint)).all()
    assert sorted((r.environment_id == a, r.seq) for r in rows) == [(False, 2), (True, 2)]
