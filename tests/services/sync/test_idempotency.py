"""`Idempotency-Key` on sync's writes (issue 17, item 3): a retry replays the stored
answer and does nothing again, another body with the same key is refused, a running
request holds its key, keys are the caller's own, a secret shown once is stored sealed,
and answers expire after 24 hours."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text, update
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, func, select

from services.registry.jobs import purge_idempotency_keys
from shared.db.types import utcnow
from shared.idempotency.store import open_answer
from shared.models import Employee, Event, IdempotencyKey, WebhookEndpoint
from shared.runtime import Runtime
from shared.vault import DecryptionError, KeyRing, SecretBox
from shared.vault.columns import IDEMPOTENT_ANSWER
from shared.vault.rotate import reencrypt
from tests.fixtures import factories as f
from tests.fixtures.backend import on_postgres
from tests.services.sync.conftest import Tokens
from tests.services.sync.worlds import Data

HOOK = {"url": "http://127.0.0.1:9/hook", "events": ["employee.updated"]}


def count(sessions: sessionmaker[Session], model, *where) -> int:
    with sessions() as session:
        return session.exec(select(func.count()).select_from(model).where(*where)).one()


@pytest.fixture
def apps(committing_sessions: sessionmaker[Session]):
    with committing_sessions() as session, session.begin():
        return f.make_app(session), f.make_app(session)


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def test_a_retry_replays_the_answer_and_the_work_is_done_once(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    employee = data.employees[0]
    path = f"/v1/employees/{employee.id}"
    auth = tokens.connection(data.connection, data.app)
    first = await sync_client.patch(path, json={"last_name": "Jansen"},
                                    headers=keyed(auth, "k-1"))
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    events = count(committing_sessions, Event)
    assert events >= 1

    # A retry with a freshly issued token of the same caller: the stored answer.
    again = await sync_client.patch(path, json={"last_name": "Jansen"},
                                    headers=keyed(tokens.connection(data.connection, data.app),
                                                  "k-1"))
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["content-type"] == first.headers["content-type"]
    assert count(committing_sessions, Event) == events  # no second event

    # Meanwhile the record changed: the replay still answers what the first call did.
    changed = await sync_client.patch(path, json={"last_name": "Bakker"}, headers=auth)
    assert changed.status_code == 200
    replay = await sync_client.patch(path, json={"last_name": "Jansen"},
                                     headers=keyed(auth, "k-1"))
    assert replay.json()["last_name"] == "Jansen"
    with committing_sessions() as session:
        assert session.get(Employee, employee.id).last_name == "Bakker"

    # The same key with another body: 422, nothing done.
    other = await sync_client.patch(path, json={"last_name": "Visser"},
                                    headers=keyed(auth, "k-1"))
    assert other.status_code == 422, other.text
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"] == "urn:koppel:problem:idempotency-key-reused"
    # ... or another path.
    elsewhere = await sync_client.patch(f"/v1/employees/{data.employees[1].id}",
                                        json={"last_name": "Jansen"}, headers=keyed(auth, "k-1"))
    assert elsewhere.status_code == 422
    with committing_sessions() as session:
        assert session.get(Employee, employee.id).last_name == "Bakker"


async def test_a_create_is_replayed_with_its_location_of_the_one_row(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps,
    committing_sessions: sessionmaker[Session],
) -> None:
    app, _ = apps
    answers = [await sync_client.post("/v1/webhooks", json=HOOK,
                                      headers=keyed(tokens.app(app), "create-1"))
               for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len({a.json()["secret"] for a in answers}) == 1
    assert count(committing_sessions, WebhookEndpoint) == 1


async def test_the_key_of_one_caller_is_not_replayed_for_another(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps,
    committing_sessions: sessionmaker[Session],
) -> None:
    mine, theirs = apps
    a = await sync_client.post("/v1/webhooks", json=HOOK, headers=keyed(tokens.app(mine), "k"))
    b = await sync_client.post("/v1/webhooks", json=HOOK,
                               headers=keyed(tokens.app(theirs), "k"))
    assert a.status_code == b.status_code == 201
    assert "idempotent-replayed" not in b.headers
    assert a.json()["id"] != b.json()["id"] and a.json()["secret"] != b.json()["secret"]
    # The other caller with another body is not refused either: its own key space.
    c = await sync_client.post("/v1/webhooks", json={**HOOK, "description": "x"},
                               headers=keyed(tokens.app(theirs), "k-other"))
    assert c.status_code == 201
    assert count(committing_sessions, WebhookEndpoint) == 3
    assert count(committing_sessions, IdempotencyKey) == 3


async def test_a_secret_shown_once_is_stored_sealed(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps, runtime: Runtime,
    committing_sessions: sessionmaker[Session],
) -> None:
    app, _ = apps
    created = await sync_client.post("/v1/webhooks", json=HOOK,
                                      headers=keyed(tokens.app(app), "sealed"))
    endpoint_id = created.json()["id"]
    rotated = await sync_client.post(f"/v1/webhooks/{endpoint_id}/rotate-secret",
                                     headers=keyed(tokens.app(app), "rotate"))
    assert rotated.status_code == 200, rotated.text
    secrets_shown = [created.json()["secret"], rotated.json()["secret"]]
    assert all(s.startswith("whsec_") for s in secrets_shown)
    with committing_sessions() as session:
        rows = session.exec(select(IdempotencyKey)).all()
        assert len(rows) == 2
        for row in rows:
            stored = " ".join(str(v) for v in row.model_dump().values())
            assert not any(s in stored or s.encode() in row.answer_ciphertext
                           for s in secrets_shown)
            assert row.key not in row.owner and len(row.owner) == 64
            assert row.answer_key_id == runtime.keyring.active_key_id
            assert any(s.encode() in open_answer(runtime.box, row).body
                       for s in secrets_shown)
            # Bound to its row and owner: moved to another owner, it no longer opens.
            moved = row.model_copy(update={"owner": "0" * 64})
            with pytest.raises(DecryptionError):
                IDEMPOTENT_ANSWER.open(runtime.box, moved)
    replay = await sync_client.post(f"/v1/webhooks/{endpoint_id}/rotate-secret",
                                    headers=keyed(tokens.app(app), "rotate"))
    assert replay.json()["secret"] == rotated.json()["secret"]
    assert replay.headers["idempotent-replayed"] == "true"

    # `koppel keys rotate` re-seals kept answers like every sealed column.
    ring = runtime.keyring
    box = SecretBox(KeyRing({**ring.keys, "k-new": b"\x01" * 32}, "k-new", ring.digest_key))
    batches = list(reencrypt(committing_sessions, box))
    assert sum(b.rows for b in batches if b.column is IDEMPOTENT_ANSWER) == 2
    with committing_sessions() as session:
        for row in session.exec(select(IdempotencyKey)).all():
            assert row.answer_key_id == "k-new"
            assert open_answer(box, row).status in (200, 201)


async def test_answers_expire_after_24_hours(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps, runtime: Runtime,
    committing_sessions: sessionmaker[Session],
) -> None:
    app, _ = apps
    headers = keyed(tokens.app(app), "day-old")
    first = await sync_client.post("/v1/webhooks", json=HOOK, headers=headers)
    with committing_sessions() as session:
        row = session.exec(select(IdempotencyKey)).one()
        assert row.expires_at - row.created_at == timedelta(hours=24)
    assert await purge_idempotency_keys({"runtime": runtime}) == 0

    def age(hours: float) -> None:
        with committing_sessions() as session, session.begin():
            then = utcnow() - timedelta(hours=hours)
            session.exec(update(IdempotencyKey).values(
                created_at=then, expires_at=then + timedelta(hours=24)))

    age(23.9)
    assert (await sync_client.post("/v1/webhooks", json=HOOK, headers=headers)
            ).json()["id"] == first.json()["id"]
    age(24.1)  # expired, not yet purged: the key is new again
    second = await sync_client.post("/v1/webhooks", json=HOOK, headers=headers)
    assert second.status_code == 201 and "idempotent-replayed" not in second.headers
    assert second.json()["id"] != first.json()["id"]
    assert count(committing_sessions, WebhookEndpoint) == 2
    assert count(committing_sessions, IdempotencyKey) == 1  # the old answer made way
    age(24.1)
    assert await purge_idempotency_keys({"runtime": runtime}) == 1
    assert count(committing_sessions, IdempotencyKey) == 0


@pytest.mark.parametrize("key", ["", " ", "x" * 256, "caf\u00e9", "tab\there"])
async def test_a_bad_key_is_refused(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps, key: str,
    committing_sessions: sessionmaker[Session],
) -> None:
    app, _ = apps
    headers = [(k, v) for k, v in tokens.app(app).items()]
    headers.append(("Idempotency-Key", key.encode("utf-8")))  # type: ignore[arg-type]
    response = await sync_client.post("/v1/webhooks", json=HOOK, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "urn:koppel:problem:invalid-idempotency-key"
    assert count(committing_sessions, WebhookEndpoint) == 0


async def test_errors_are_not_kept(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps,
    committing_sessions: sessionmaker[Session],
) -> None:
    app, _ = apps
    headers = keyed(tokens.app(app), "fix-and-retry")
    bad = await sync_client.post("/v1/webhooks", json={**HOOK, "events": ["no.such"]},
                                 headers=headers)
    assert bad.status_code in (400, 422), bad.text
    assert count(committing_sessions, IdempotencyKey) == 0
    # Without a valid credential the route answers 401 and nothing is kept either.
    refused = await sync_client.post("/v1/webhooks", json=HOOK,
                                     headers={"Authorization": "Bearer nope",
                                              "Idempotency-Key": "fix-and-retry"})
    assert refused.status_code == 401
    good = await sync_client.post("/v1/webhooks", json=HOOK, headers=headers)
    assert good.status_code == 201 and count(committing_sessions, WebhookEndpoint) == 1


async def test_two_identical_requests_at_once_do_the_work_once(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps,
    committing_sessions: sessionmaker[Session],
) -> None:
    app, _ = apps
    headers = keyed(tokens.app(app), "at-once")
    answers = await asyncio.gather(*(sync_client.post("/v1/webhooks", json=HOOK,
                                                      headers=headers) for _ in range(4)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {201, 409}, [a.text for a in answers]
    created = {a.json()["id"] for a in answers if a.status_code == 201}
    assert len(created) == 1
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["type"] == "urn:koppel:problem:idempotency-key-in-use"
    assert count(committing_sessions, WebhookEndpoint) == 1


@pytest.mark.skipif(not on_postgres(), reason="holds a row lock of PostgreSQL")
async def test_a_request_still_running_holds_its_key(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    committing_sessions: sessionmaker[Session],
) -> None:
    """The first request waits on a row lock held by the test; the second, identical,
    answers 409 meanwhile; once the lock goes, the first finishes and a third replays."""
    employee = data.employees[0]
    path = f"/v1/employees/{employee.id}"
    headers = keyed(tokens.connection(data.connection, data.app), "slow")
    events = count(committing_sessions, Event)
    with committing_sessions() as blocker:
        blocker.exec(text("SELECT 1 FROM employees WHERE id = :id FOR UPDATE"),  # type: ignore[call-overload]
                     params={"id": employee.id})
        first = asyncio.create_task(sync_client.patch(path, json={"last_name": "Slow"},
                                                      headers=headers))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if blocker.exec(text(  # type: ignore[call-overload]
                    "SELECT count(*) FROM pg_locks WHERE NOT granted")).one()[0]:
                break
        second = await sync_client.patch(path, json={"last_name": "Slow"}, headers=headers)
        assert second.status_code == 409, second.text
        assert second.json()["type"] == "urn:koppel:problem:idempotency-key-in-use"
        blocker.rollback()
    done = await first
    assert done.status_code == 200, done.text
    third = await sync_client.patch(path, json={"last_name": "Slow"}, headers=headers)
    assert third.headers["idempotent-replayed"] == "true" and third.content == done.content
    assert count(committing_sessions, Event) == events + 1


@pytest.mark.skipif(not on_postgres(), reason="holds a row lock of PostgreSQL")
async def test_the_answer_commits_with_the_work_even_when_the_lock_ran_out(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data, runtime: Runtime,
    committing_sessions: sessionmaker[Session],
) -> None:
    """Two identical requests both run (their Redis lock is taken away, as if it had run
    out): the table's unique key lets one commit; the other's work rolls back."""
    employee = data.employees[0]
    path = f"/v1/employees/{employee.id}"
    headers = keyed(tokens.connection(data.connection, data.app), "lost-lock")
    events = count(committing_sessions, Event)

    async def waiting_locks(blocker: Session, n: int) -> None:
        for _ in range(500):
            await asyncio.sleep(0.01)
            if blocker.exec(text(  # type: ignore[call-overload]
                    "SELECT count(*) FROM pg_locks WHERE NOT granted")).one()[0] >= n:
                return
        raise AssertionError("the requests did not reach the row lock")

    with committing_sessions() as blocker:
        blocker.exec(text("SELECT 1 FROM employees WHERE id = :id FOR UPDATE"),  # type: ignore[call-overload]
                     params={"id": employee.id})
        tasks = []
        for n in (1, 2):
            tasks.append(asyncio.create_task(sync_client.patch(
                path, json={"last_name": "Twice"}, headers=headers)))
            await waiting_locks(blocker, n)
            for lock in await runtime.redis.keys("koppel:idempotency:*"):
                await runtime.redis.delete(lock)
        blocker.rollback()
    answers = sorted([await t for t in tasks], key=lambda a: a.status_code)
    assert [a.status_code for a in answers] == [200, 409], [a.text for a in answers]
    assert "was answered" in answers[1].json()["detail"]  # refused at the commit
    assert count(committing_sessions, Event) == events + 1
    assert count(committing_sessions, IdempotencyKey) == 1
    replay = await sync_client.patch(path, json={"last_name": "Twice"}, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == answers[0].content
