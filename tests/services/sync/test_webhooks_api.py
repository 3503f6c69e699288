"""`/v1/webhooks`: an app's own endpoints, the secret shown once and stored sealed,
validation (event catalogue, SSRF guard) and isolation between apps."""

from __future__ import annotations

import base64

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from services.sync.app import create_app
from shared.config import Settings
from shared.models import WebhookEndpoint
from shared.runtime import Runtime
from shared.vault import DecryptionError, KeyRing, SecretBox
from shared.vault.columns import (
    WEBHOOK_PREVIOUS_SIGNING_KEY,
    WEBHOOK_SECRET,
    WEBHOOK_SIGNING_KEY,
)
from shared.vault.rotate import reencrypt
from tests.fixtures import factories as f
from tests.services.conftest import running
from tests.services.sync.conftest import Receiver, Tokens

# SECURITY line 25, as callback URLs.
SECURITY_25 = [
    "https://127.0.0.1/", "https://[::ffff:127.0.0.1]/", "https://2130706433/",
    "https://[64:ff9b::7f00:1]/", "https://[2002:7f00:1::]/", "https://169.254.169.254/",
    "https://10.0.0.1/", "https://10.255.0.9/", "https://internal.test/", "http://8.8.8.8/",
]
HOOK = {"url": "http://127.0.0.1:9/hook", "events": ["employee.updated", "connection.revoked"]}


@pytest.fixture
def apps(committing_sessions: sessionmaker[Session]):
    with committing_sessions() as session, session.begin():
        return f.make_app(session), f.make_app(session)


async def test_create_returns_the_secret_once_and_stores_it_sealed(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps, runtime: Runtime,
    committing_sessions: sessionmaker[Session],
) -> None:
    app, _ = apps
    response = await sync_client.post("/v1/webhooks", json=HOOK, headers=tokens.app(app))
    assert response.status_code == 201, response.text
    body = response.json()
    assert {"id", "url", "events", "secret"} <= body.keys()
    assert body["events"] == HOOK["events"] and body["url"] == HOOK["url"]
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32

    shown = await sync_client.get(f"/v1/webhooks/{body['id']}", headers=tokens.app(app))
    assert shown.status_code == 200 and "secret" not in shown.json()
    listed = await sync_client.get("/v1/webhooks", headers=tokens.app(app))
    assert [e["id"] for e in listed.json()["data"]] == [body["id"]]

    with committing_sessions() as session:
        row = session.exec(select(WebhookEndpoint)).one()
        assert secret.encode() not in row.secret_ciphertext
        assert WEBHOOK_SECRET.open(runtime.box, row) == secret.encode()
        # Moved to another row, the ciphertext no longer opens (row identity as AAD).
        other = WebhookEndpoint(app_id=row.app_id, url=row.url, events=[],
                                secret_ciphertext=row.secret_ciphertext,
                                secret_key_id=row.secret_key_id)
        with pytest.raises(DecryptionError):
            WEBHOOK_SECRET.open(runtime.box, other)


async def test_key_rotation_reencrypts_webhook_secrets(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps, runtime: Runtime,
    committing_sessions: sessionmaker[Session],
) -> None:
    app, _ = apps
    secret = (await sync_client.post("/v1/webhooks", json=HOOK, headers=tokens.app(app))
              ).json()["secret"]
    ring = runtime.keyring
    new_ring = KeyRing({**ring.keys, "k-new": b"\x01" * 32}, "k-new", ring.digest_key)
    box = SecretBox(new_ring)
    batches = list(reencrypt(committing_sessions, box))
    assert any(b.column.table == "webhook_endpoints" for b in batches)
    with committing_sessions() as session:
        row = session.exec(select(WebhookEndpoint)).one()
        assert row.secret_key_id == "k-new"
        assert WEBHOOK_SECRET.open(box, row) == secret.encode()


async def test_key_rotation_reencrypts_ed25519_signing_keys(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps, runtime: Runtime,
    committing_sessions: sessionmaker[Session],
) -> None:
    app, other = apps
    created = (await sync_client.post("/v1/webhooks", headers=tokens.app(app),
                                      json={**HOOK, "signature_scheme": "ed25519"})).json()
    rotated = await sync_client.post(f"/v1/webhooks/{created['id']}/rotate-key",
                                     headers=tokens.app(app))
    assert rotated.status_code == 200, rotated.text
    # The key set is the caller's own: both keys for the app, none for another app.
    own = (await sync_client.get("/v1/webhooks/keys", headers=tokens.app(app))).json()
    assert [k["status"] for k in own["keys"]] == ["current", "previous"]
    theirs = (await sync_client.get("/v1/webhooks/keys", headers=tokens.app(other))).json()
    assert theirs["keys"] == []
    with committing_sessions() as session:
        before = session.exec(select(WebhookEndpoint)).one()
        keys = (WEBHOOK_SIGNING_KEY.open(runtime.box, before),
                WEBHOOK_PREVIOUS_SIGNING_KEY.open(runtime.box, before))
    ring = runtime.keyring
    box = SecretBox(KeyRing({**ring.keys, "k-new": b"\x02" * 32}, "k-new", ring.digest_key))
    list(reencrypt(committing_sessions, box))
    with committing_sessions() as session:
        row = session.exec(select(WebhookEndpoint)).one()
        assert row.signing_key_key_id == row.previous_signing_key_key_id == "k-new"
        assert (WEBHOOK_SIGNING_KEY.open(box, row),
                WEBHOOK_PREVIOUS_SIGNING_KEY.open(box, row)) == keys


async def test_crud_and_another_apps_ids_answer_404(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps,
) -> None:
    mine, theirs = apps
    created = (await sync_client.post("/v1/webhooks", json=HOOK, headers=tokens.app(mine))).json()
    path = f"/v1/webhooks/{created['id']}"
    foreign = tokens.app(theirs)
    for method, url, body in [
        ("GET", path, None), ("PATCH", path, {"description": "x"}), ("DELETE", path, None),
        ("GET", f"{path}/deliveries", None), ("POST", f"{path}/rotate-secret", None),
        ("POST", f"{path}/test", None), ("POST", f"{path}/disable", None),
        ("POST", f"{path}/rotate-key", None),
        ("POST", f"{path}/recover", {"since": "2026-01-01T00:00:00Z"}),
    ]:
        response = await sync_client.request(method, url, json=body, headers=foreign)
        assert response.status_code == 404, (method, url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert (await sync_client.get("/v1/webhooks", headers=foreign)).json()["data"] == []
    assert (await sync_client.get("/v1/webhooks/keys", headers=foreign)).json()["keys"] == []

    own = tokens.app(mine)
    patched = await sync_client.patch(path, json={"events": ["company.updated"],
                                                  "description": "payroll"}, headers=own)
    assert patched.status_code == 200
    assert patched.json()["events"] == ["company.updated"]
    disabled = await sync_client.post(f"{path}/disable", headers=own)
    assert disabled.json()["status"] == "disabled" and disabled.json()["disabled_reason"]
    enabled = await sync_client.post(f"{path}/enable", headers=own)
    assert enabled.json()["status"] == "active" and enabled.json()["disabled_reason"] is None
    rotated = await sync_client.post(f"{path}/rotate-secret", json={"overlap_seconds": 60},
                                     headers=own)
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["previous_secret_expires_at"]
    assert (await sync_client.delete(path, headers=own)).status_code == 204
    assert (await sync_client.get(path, headers=own)).status_code == 404


@pytest.mark.parametrize("body", [
    {"url": "http://127.0.0.1:9/hook", "events": ["employee.exploded"]},
    {"url": "http://127.0.0.1:9/hook", "events": []},
    {"url": "http://127.0.0.1:9/hook"},
    {"url": "http://127.0.0.1:9/hook", "events": ["employee.updated"], "app_id": "x"},
    {"url": "http://10.0.0.1/hook", "events": ["employee.updated"]},
    {"url": "https://169.254.169.254/", "events": ["employee.updated"]},
    {"url": "https://2130706433/", "events": ["employee.updated"]},
    {"url": "https://[::ffff:127.0.0.1]/", "events": ["employee.updated"]},
    {"url": "ftp://127.0.0.1/", "events": ["employee.updated"]},
])
async def test_bad_input_is_422_and_writes_nothing(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps, body: dict,
    committing_sessions: sessionmaker[Session],
) -> None:
    response = await sync_client.post("/v1/webhooks", json=body, headers=tokens.app(apps[0]))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    with committing_sessions() as session:
        assert session.exec(select(WebhookEndpoint)).all() == []


async def test_loopback_refused_without_the_setting(
    settings: Settings, tokens: Tokens, apps, receiver: Receiver,
    committing_sessions: sessionmaker[Session],
) -> None:
    strict = settings.model_copy(update={"webhooks_allow_loopback": False})
    app = create_app(strict)

    async def resolver(host: str) -> list[str]:
        return {"internal.test": ["10.1.2.3"], "localhost": ["127.0.0.1"]}[host]

    app.state.ssrf_resolver = resolver
    async with running(app) as client:
        for url in (receiver.url("/ok"), f"https://127.0.0.1:{receiver.port}/ok",
                    f"https://[::1]:{receiver.port}/ok", f"https://localhost:{receiver.port}/",
                    *SECURITY_25):
            response = await client.post("/v1/webhooks", json={**HOOK, "url": url},
                                         headers=tokens.app(apps[0]))
            assert response.status_code == 422, url
            assert response.json()["type"].endswith("invalid-webhook-url")
        ok = await client.post("/v1/webhooks", json={**HOOK, "url": "https://8.8.8.8/hook"},
                               headers=tokens.app(apps[0]))
        assert ok.status_code == 201
    assert receiver.requests == []


async def test_only_app_tokens_with_webhooks_manage(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps,
    committing_sessions: sessionmaker[Session],
) -> None:
    assert (await sync_client.get("/v1/webhooks")).status_code == 401
    no_scope = await sync_client.get("/v1/webhooks", headers=tokens.app(apps[0], "other"))
    assert no_scope.status_code == 403
    with committing_sessions() as session, session.begin():
        env = f.make_environment(session)
        debtor = f.make_debtor(session, env)
        user = f.make_user(session, env, debtor=debtor)
        connection = f.make_connection(session, user, apps[0],
                                       scopes=["company.info.read", "webhooks.manage"])
    as_user = await sync_client.get("/v1/webhooks",
                                    headers=tokens.connection(connection, apps[0]))
    assert as_user.status_code == 403


async def test_an_app_has_a_bounded_number_of_endpoints(
    sync_client: httpx.AsyncClient, tokens: Tokens, apps, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.sync.webhooks import service

    monkeypatch.setattr(service, "MAX_ENDPOINTS_PER_APP", 2)
    auth = tokens.app(apps[0])
    answers = [(await sync_client.post("/v1/webhooks", json=HOOK, headers=auth)).status_code
               for _ in range(3)]
    assert answers == [201, 201, 409]
    assert (await sync_client.post("/v1/webhooks", json=HOOK,
                                   headers=tokens.app(apps[1]))).status_code == 201
