"""Ed25519 (`v1a`) webhook signatures: an endpoint chooses them, its private key is
sealed and never shown, its `whpk_` public key is in `GET /v1/webhooks/{id}` and the key
set, rotation overlaps like the secret's; real deliveries verify with exactly the Python
and JavaScript snippets of docs/partners.md (the JavaScript one run by `node`)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select
from standardwebhooks.webhooks import Webhook

from services.sync.webhooks.signing import public_key_text
from shared.config import Settings
from shared.jobs import nudge
from shared.models import WebhookEndpoint
from shared.runtime import Runtime
from shared.vault.columns import ENCRYPTED_COLUMNS, WEBHOOK_SIGNING_KEY
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running
from tests.services.sync.test_webhook_delivery import emitted, settled
from tests.services.sync.worlds import World

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "partners.md"
RUN_JS = """import { verifyV1a } from "./verify.mjs";
let input = "";
for await (const chunk of process.stdin) input += chunk;
const cases = JSON.parse(input);
console.log(JSON.stringify(cases.map(
  (c) => verifyV1a(c.keys, Buffer.from(c.body, "base64"), c.headers))));
"""


def snippet(name: str) -> str:
    """The code block that follows `<!-- snippet: name -->` in the partner guide: what
    the tests run is the text partners copy."""
    text = GUIDE.read_text()
    start = text.index(f"<!-- snippet: {name} -->\n```")
    start = text.index("\n", text.index("```", start)) + 1
    return text[start:text.index("\n```\n", start) + 1]


def python_verify(keys: list[str], body: bytes, headers: dict[str, str]) -> bool:
    namespace: dict[str, Any] = {}
    exec(compile(snippet("verify-v1a-python"), str(GUIDE), "exec"), namespace)  # noqa: S102
    return namespace["verify_v1a"](keys, body, headers)


def node_verify(tmp_path: Path, cases: list[tuple[list[str], bytes, dict[str, str]]]
                ) -> list[bool]:
    """Run the guide's JavaScript snippet with node on each (keys, body, headers)."""
    (tmp_path / "verify.mjs").write_text(snippet("verify-v1a-javascript"))
    (tmp_path / "run.mjs").write_text(RUN_JS)
    data = [{"keys": k, "body": base64.b64encode(b).decode(), "headers": h}
            for k, b, h in cases]
    done = subprocess.run(["node", str(tmp_path / "run.mjs")], input=json.dumps(data),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def other_key() -> str:
    return public_key_text(Ed25519PrivateKey.generate())


def test_the_guide_holds_both_snippets() -> None:
    python, javascript = snippet("verify-v1a-python"), snippet("verify-v1a-javascript")
    assert "def verify_v1a(" in python and "cryptography" in python
    assert "export function verifyV1a(" in javascript and '"node:crypto"' in javascript


async def create(client: httpx.AsyncClient, tokens: Tokens, world: World, url: str,
                 **options: Any) -> dict[str, Any]:
    response = await client.post("/v1/webhooks", headers=tokens.app(world.apps["info"]),
                                 json={"url": url, "events": ["employee.updated"], **options})
    assert response.status_code == 201, response.text
    return response.json()


async def test_ed25519_deliveries_verify_with_the_guides_snippets_and_the_key_stays_sealed(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    auth = tokens.app(world.apps["info"])
    hook = await create(sync_client, tokens, world, receiver.url("/ok"),
                        signature_scheme="ed25519")
    public = hook["public_key"]
    assert hook["signature_scheme"] == "ed25519" and public.startswith("whpk_")
    assert len(base64.b64decode(public.removeprefix("whpk_"), validate=True)) == 32
    shown = (await sync_client.get(f"/v1/webhooks/{hook['id']}", headers=auth)).json()
    assert shown["public_key"] == public and shown["signature_scheme"] == "ed25519"
    keys = await sync_client.get("/v1/webhooks/keys", headers=auth)
    assert keys.status_code == 200, keys.text
    [entry] = keys.json()["keys"]
    assert entry["endpoint_id"] == hook["id"] and entry["public_key"] == public
    assert entry["status"] == "current" and entry["expires_at"] is None
    raw = base64.b64decode(public.removeprefix("whpk_"))
    assert entry["jwk"]["kty"] == "OKP" and entry["jwk"]["crv"] == "Ed25519"
    assert base64.urlsafe_b64decode(entry["jwk"]["x"] + "=") == raw

    # The private key: sealed (the vault opens it to the key of `public`), never shown.
    assert WEBHOOK_SIGNING_KEY in ENCRYPTED_COLUMNS  # `koppel keys rotate` re-seals it
    with committing_sessions() as session:
        row = session.exec(select(WebhookEndpoint)).one()
    private = WEBHOOK_SIGNING_KEY.open(runtime.box, row)
    assert public_key_text(Ed25519PrivateKey.from_private_bytes(private)) == public
    assert private not in row.signing_key_ciphertext
    answers = json.dumps([hook, shown, keys.json()])
    for form in (base64.b64encode(private).decode(), private.hex(),
                 base64.urlsafe_b64encode(private).decode().rstrip("=")):
        assert form not in answers

    await emitted(committing_sessions, world, "employee.updated")
    await nudge(runtime.redis)
    async with worker_running(settings):
        await wait_for(settled(runtime, 1))
    [request] = receiver.to("/ok")
    [signature] = request.headers["webhook-signature"].split()
    assert signature.startswith("v1a,")
    with pytest.raises(Exception, match=r"(?i)signature"):  # no `v1`: the secret is unused
        Webhook(hook["secret"]).verify(request.body, request.headers)

    tampered = request.body.replace(b"last_name", b"first_name")
    cases = [
        ([public], request.body, request.headers),
        ([other_key(), public], request.body, request.headers),
        ([public], tampered, request.headers),
        ([other_key()], request.body, request.headers),
        ([public], request.body, {**request.headers, "webhook-id": "msg_other"}),
        ([public], request.body, {**request.headers, "webhook-timestamp": "1000000000"}),
    ]
    expected = [True, True, False, False, False, False]
    assert [python_verify(*case) for case in cases] == expected
    assert node_verify(tmp_path, cases) == expected


async def test_key_rotation_overlaps_like_the_secret_and_the_scheme_can_change(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    auth = tokens.app(world.apps["info"])
    hmac_hook = await create(sync_client, tokens, world, receiver.url("/ok/hmac"))
    assert hmac_hook["signature_scheme"] == "hmac-sha256" and hmac_hook["public_key"] is None
    refused = await sync_client.post(f"/v1/webhooks/{hmac_hook['id']}/rotate-key",
                                     headers=auth)
    assert refused.status_code == 409, refused.text
    bad = await sync_client.patch(f"/v1/webhooks/{hmac_hook['id']}", headers=auth,
                                  json={"signature_scheme": "rsa"})
    assert bad.status_code == 422
    switched = await sync_client.patch(f"/v1/webhooks/{hmac_hook['id']}", headers=auth,
                                       json={"signature_scheme": "ed25519"})
    assert switched.status_code == 200, switched.text
    old = switched.json()["public_key"]
    assert old.startswith("whpk_")

    rotated = await sync_client.post(f"/v1/webhooks/{hmac_hook['id']}/rotate-key",
                                     headers=auth)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["public_key"]
    assert new != old and rotated.json()["previous_public_key"] == old
    assert rotated.json()["previous_public_key_expires_at"]
    listed = (await sync_client.get("/v1/webhooks/keys", headers=auth)).json()["keys"]
    assert [(k["public_key"], k["status"]) for k in listed] == [(new, "current"),
                                                                (old, "previous")]

    await emitted(committing_sessions, world, "employee.updated")
    await nudge(runtime.redis)
    async with worker_running(settings):
        await wait_for(settled(runtime, 1))
    [request] = receiver.to("/ok/hmac")
    signatures = request.headers["webhook-signature"].split()
    assert len(signatures) == 2 and all(s.startswith("v1a,") for s in signatures)
    cases = [([new], request.body, request.headers), ([old], request.body, request.headers)]
    assert [python_verify(*case) for case in cases] == [True, True]
    assert node_verify(tmp_path, cases) == [True, True]

    # Without an overlap the old key stops at once; the key set shows only the new one.
    again = await sync_client.post(f"/v1/webhooks/{hmac_hook['id']}/rotate-key",
                                   headers=auth, json={"overlap_seconds": 0})
    assert again.status_code == 200 and again.json()["previous_public_key"] is None
    listed = (await sync_client.get("/v1/webhooks/keys", headers=auth)).json()["keys"]
    assert [k["public_key"] for k in listed] == [again.json()["public_key"]]
    # Back to HMAC: `v1` with the secret shown at creation.
    back = await sync_client.patch(f"/v1/webhooks/{hmac_hook['id']}", headers=auth,
                                   json={"signature_scheme": "hmac-sha256"})
    assert back.status_code == 200 and back.json()["signature_scheme"] == "hmac-sha256"
    assert (await sync_client.get("/v1/webhooks/keys", headers=auth)).json()["keys"] == []
