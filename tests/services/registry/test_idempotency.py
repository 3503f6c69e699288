"""`Idempotency-Key` on the registry's writes (issue 17, item 3): RFC 7591 registration
(an initial access token's own key space; the client secret stored sealed), provisioning
with a first-party app's renewed token, and a status change that is still published."""

from __future__ import annotations

import httpx
import pytest
from sqlmodel import func, select

from shared.models import App, Environment, IdempotencyKey, Partner
from shared.runtime import Runtime
from shared.tokens import InvalidToken, TokenVerifier
from shared.vault import KeyRing, TokenKind, new_token, token_digest
from tests.services.registry.conftest import World, bearer
from tests.services.registry.test_registration import GOOD


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def count(world: World, model) -> int:
    with world.sessions() as session:
        return session.exec(select(func.count()).select_from(model)).one()


async def test_a_registration_is_done_once_and_its_secrets_are_sealed(
    client: httpx.AsyncClient, world: World, initial_token: str, keyring: KeyRing,
) -> None:
    apps = count(world, App)
    headers = keyed(bearer(initial_token), "register-1")
    first = await client.post("/oauth2/register", json=GOOD, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post("/oauth2/register", json=GOOD, headers=headers)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["cache-control"] == "no-store"
    assert count(world, App) == apps + 1
    other = await client.post("/oauth2/register", json={**GOOD, "client_name": "Other"},
                              headers=headers)
    assert other.status_code == 422 and count(world, App) == apps + 1

    shown = [first.json()["client_secret"], first.json()["registration_access_token"]]
    with world.sessions() as session:
        row = session.exec(select(IdempotencyKey)).one()
        assert not any(s.encode() in row.answer_ciphertext for s in shown)
        assert not any(s in str(row.model_dump()) for s in shown)
        # The owner is a keyed digest: the credential is not stored either.
        assert initial_token not in str(row.model_dump())

    # Another partner's initial access token with the same key: its own registration.
    token = new_token(TokenKind.INITIAL_ACCESS_TOKEN)
    with world.sessions() as session, session.begin():
        session.add(Partner(name="Other Co",
                            initial_access_token_digest=token_digest(keyring.digest_key, token)))
    theirs = await client.post("/oauth2/register", json=GOOD,
                               headers=keyed(bearer(token), "register-1"))
    assert theirs.status_code == 201 and "idempotent-replayed" not in theirs.headers
    assert theirs.json()["client_id"] != first.json()["client_id"]
    assert count(world, App) == apps + 2


async def test_a_refused_registration_is_not_kept(
    client: httpx.AsyncClient, world: World, initial_token: str,
) -> None:
    headers = keyed(bearer(initial_token), "register-2")
    bad = await client.post("/oauth2/register", json={**GOOD, "redirect_uris": []},
                            headers=headers)
    assert bad.status_code == 400
    wrong = await client.post("/oauth2/register", json=GOOD,
                              headers=keyed(bearer("iat_not-a-token"), "register-2"))
    assert wrong.status_code == 401
    assert count(world, IdempotencyKey) == 0
    fixed = await client.post("/oauth2/register", json=GOOD, headers=headers)
    assert fixed.status_code == 201 and "idempotent-replayed" not in fixed.headers


async def test_provisioning_with_a_renewed_token_replays(
    client: httpx.AsyncClient, world: World,
) -> None:
    environments = count(world, Environment)
    answers = []
    for _ in range(2):  # a new token each time, as after a renewal
        token = world.app_token(world.first_party, "directory.manage")
        answers.append(await client.post("/v1/directory/environments", json={"name": "Firm"},
                                         headers=keyed(bearer(token), "env-1")))
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[1].headers["idempotent-replayed"] == "true"
    assert answers[0].json() == answers[1].json()
    assert count(world, Environment) == environments + 1


async def test_a_status_change_is_published_and_replayed(
    client: httpx.AsyncClient, world: World, runtime: Runtime,
) -> None:
    user = world.a.users["company"]
    mine = [c for c in world.a.connections if c.user_id == user.id]
    token = world.connection_token(mine[0])
    verifier = TokenVerifier.from_runtime(runtime)
    headers = keyed(bearer(world.app_token(world.first_party, "directory.manage")), "off")
    try:
        await verifier.verify(token)
        off = await client.patch(f"/v1/directory/users/{user.id}", json={"active": False},
                                 headers=headers)
        assert off.status_code == 200, off.text
        with pytest.raises(InvalidToken):  # published right after the commit
            await verifier.verify(token)
        again = await client.patch(f"/v1/directory/users/{user.id}", json={"active": False},
                                   headers=headers)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == off.json()
    finally:
        verifier.close()
