"""Signed consent receipts end to end (issue 16, item 1), with the real auth service: a
consent through the page signs a receipt that PyJWT and joserfc verify with the keys
published at `attestation_jwks_uri`; the wording it names by hash is served byte for
byte and stays as it was when a scope's text changes; scopes added, a narrowing and a
revoke chain further receipts; after an attestation-key rotation the old receipts still
verify and the new ones carry the new kid; the partner's copies leave the user out; the
accountant reads the same chain; `koppel receipt verify` accepts a good receipt and
refuses a tampered one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from sqlmodel import col, select
from typer.testing import CliRunner

from cli.main import app as koppel
from services.registry.app import create_app as create_registry
from shared.attestation import rotate_attestation_key_in
from shared.config import Settings
from shared.models import AuditEvent, Connection, Event
from shared.receipts import RECEIPT_TYP, USER_FIELDS
from shared.scopes import SCOPES
from shared.vault import SecretBox
from tests.fixtures.auth_server import AuthServer
from tests.services.auth.support import AuthRequest
from tests.services.conftest import running
from tests.services.registry.support import client_credentials, consent_scene

FIRST_SCOPE = "company.info.read offline_access"
WIDER_SCOPE = "company.info.read employee.info.read offline_access"


def attestation_jwks(server: AuthServer) -> dict[str, Any]:
    """The attestation key set, found the way a verifier finds it: from discovery."""
    discovery = httpx.get(f"{server.url}/.well-known/openid-configuration").json()
    answer = httpx.get(discovery["attestation_jwks_uri"])
    assert answer.status_code == 200
    return answer.json()


def verified(token: str, jwks: dict[str, Any], issuer: str) -> dict[str, Any]:
    """The claims of a receipt, checked by PyJWT and by joserfc (they must agree)."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == RECEIPT_TYP and header["alg"] == "ES256"
    [key] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    by_pyjwt = jwt.decode(token, key=jwt.PyJWK(key), algorithms=["ES256"], issuer=issuer)
    by_joserfc = jose_jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["ES256"])
    assert by_joserfc.header["typ"] == RECEIPT_TYP
    assert by_joserfc.claims == by_pyjwt
    return by_pyjwt


async def receipts(registry: httpx.AsyncClient, path: str, headers: dict[str, str]
                   ) -> list[dict[str, Any]]:
    answer = await registry.get(path, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def kid(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def worded(scope: str, lang: str) -> dict[str, str]:
    """What the catalogue says of a scope now, as a receipt carries it."""
    entry = SCOPES[scope].localized(lang)
    return {"scope": scope, "title": entry["title"], "description": entry["description"],
            "lang": lang, "sensitivity": entry["sensitivity"]}


async def test_consent_receipts_chain_verify_and_keep_their_wording(
    settings: Settings, auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with consent_scene(auth_server, settings, "Receipt Planner") as scene:
        app = scene.partner_app
        linked = scene.agent.link(AuthRequest(app, scope=FIRST_SCOPE,
                                              extra={"ui_locales": "nl"}), scene.user)
        assert linked.pages == ["consent"] and "code" in linked.params
        async with running(create_registry(scene.reg)) as registry:
            listed = await registry.get("/v1/me/connections", headers=scene.mine)
            [connection] = listed.json()["data"]
            cid = connection["id"]
            mine = f"/v1/me/connections/{cid}/receipts"

            # Granted on the page: a receipt that any JWT library verifies.
            [first] = await receipts(registry, mine, scene.mine)
            jwks = attestation_jwks(auth_server)
            granted = verified(first["jws"], jwks, auth_server.url)
            assert first["act"] == granted["act"] == "granted"
            assert granted["jti"] == first["id"]
            assert granted["collectionMethod"] == "consent_page"
            assert granted["connection_id"] == cid and granted["previous_receipt_id"] is None
            with auth_server.sessions() as session:
                stored = session.get(Connection, uuid.UUID(cid))
                assert stored is not None
            assert granted["environment_id"] == str(stored.environment_id)
            assert granted["user"] == {"id": scene.user.id, "template": "master_client"}
            assert granted["app"]["client_id"] == app.client_id
            assert granted["app"]["publisher"] == "Partner B.V."
            assert granted["debtor"]["id"] == connection["debtor_id"]
            assert sorted(c["id"] for c in granted["companies"]) == sorted(
                connection["company_ids"])
            assert granted["language"] == "nl"
            assert granted["scopes"] == [worded("company.info.read", "nl"),
                                         worded("offline_access", "nl")]

            # The wording behind the hash: exactly the bytes that hash to it.
            old_hash = granted["wording_sha256"]
            served = await registry.get(f"/v1/scopes/wording/{old_hash}")
            assert served.status_code == 200
            assert hashlib.sha256(served.content).hexdigest() == old_hash
            assert served.json() == {"scopes": granted["scopes"]}
            assert (await registry.get(f"/v1/scopes/wording/{'0' * 64}")).status_code == 404
            assert (await registry.get("/v1/scopes/wording/not-a-hash")).status_code == 422
            assert (await registry.get(f"/v1/scopes/wording/{'A' * 64}")).status_code == 422

            # The catalogue's text changes; the app asks for one scope more.
            changed = dataclasses.replace(SCOPES["company.info.read"], title={
                "nl": "Bedrijven en debiteuren inzien", "en": "View companies and debtors"})
            monkeypatch.setitem(SCOPES, "company.info.read", changed)
            linked = scene.agent.link(AuthRequest(app, scope=WIDER_SCOPE,
                                                  extra={"ui_locales": "nl"}), scene.user)
            assert linked.pages == ["consent"]
            [again, second] = await receipts(registry, mine, scene.mine)
            assert again == first  # an old receipt never changes
            added = verified(second["jws"], jwks, auth_server.url)
            assert added["act"] == "scopes_added"
            assert added["previous_receipt_id"] == first["id"]
            assert worded("company.info.read", "nl")["title"] == "Bedrijven en debiteuren inzien"
            assert added["scopes"] == [worded("company.info.read", "nl"),
                                       worded("employee.info.read", "nl"),
                                       worded("offline_access", "nl")]
            assert added["wording_sha256"] != old_hash
            still = await registry.get(f"/v1/scopes/wording/{old_hash}")
            assert still.content == served.content

            # Narrowed through Manage apps: its wording is the previous receipt's.
            narrowed = await registry.post(f"/v1/me/connections/{cid}/narrow",
                                           headers=scene.mine,
                                           json={"scopes": ["company.info.read"]})
            assert narrowed.status_code == 200, narrowed.text
            third = (await receipts(registry, mine, scene.mine))[2]
            narrowing = verified(third["jws"], jwks, auth_server.url)
            assert narrowing["act"] == "narrowed"
            assert narrowing["collectionMethod"] == "user"
            assert narrowing["previous_receipt_id"] == second["id"]
            assert narrowing["language"] == "nl"
            assert narrowing["scopes"] == [added["scopes"][0]]
            old_kid = kid(third["jws"])
            assert {kid(r["jws"]) for r in (first, second)} == {old_kid}

            # A new attestation key; then the user revokes the connection.
            with auth_server.sessions() as session, session.begin():
                new_kid = rotate_attestation_key_in(session, SecretBox(auth_server.keyring))
            revoked = await registry.delete(f"/v1/me/connections/{cid}", headers=scene.mine)
            assert revoked.status_code == 204
            chain = await receipts(registry, mine, scene.mine)
            assert [r["act"] for r in chain] == ["granted", "scopes_added", "narrowed",
                                                 "revoked"]
            fourth = chain[3]
            assert kid(fourth["jws"]) == new_kid != old_kid
            jwks = attestation_jwks(auth_server)
            assert {old_kid, new_kid} <= {k["kid"] for k in jwks["keys"]}
            claims = [verified(r["jws"], jwks, auth_server.url) for r in chain]
            assert claims[3]["previous_receipt_id"] == third["id"]
            assert claims[3]["actor"] == f"user:{scene.user.id}"

            # Paged like every registry list.
            page = await registry.get(mine, params={"limit": 3}, headers=scene.mine)
            assert [r["id"] for r in page.json()["data"]] == [r["id"] for r in chain[:3]]
            assert 'rel="next"' in page.headers["link"]
            rest = await registry.get(mine, headers=scene.mine, params={
                "limit": 3, "cursor": page.json()["next_cursor"]})
            assert [r["id"] for r in rest.json()["data"]] == [fourth["id"]]
            assert rest.json()["next_cursor"] is None

            # The accountant reads the same chain.
            books = await receipts(registry, f"/v1/environment/connections/{cid}/receipts",
                                   scene.books)
            assert books == chain

            # The partner's copies: the same receipts, signed without the user.
            theirs = await receipts(registry, f"/v1/app/connections/{cid}/receipts",
                                    client_credentials(auth_server, app))
            assert [r["id"] for r in theirs] == [r["id"] for r in chain]
            for full, partner in zip(claims, theirs, strict=True):
                seen = verified(partner["jws"], jwks, auth_server.url)
                assert not set(USER_FIELDS) & set(seen)
                assert scene.user.id not in json.dumps(seen)
                assert seen == {k: v for k, v in full.items() if k not in USER_FIELDS}

        # Checked offline by the command line against a saved key set.
        saved = tmp_path / "attestation-jwks.json"
        saved.write_text(json.dumps(jwks))
        good = tmp_path / "receipt.jws"
        good.write_text(fourth["jws"])
        runner = CliRunner()
        ok = runner.invoke(koppel, ["receipt", "verify", str(good), "--jwks", str(saved),
                                    "--json"])
        assert ok.exit_code == 0, ok.output
        assert json.loads(ok.stdout)["claims"]["jti"] == fourth["id"]
        header, _, signature = fourth["jws"].split(".")
        tampered_claims = {**claims[3], "act": "granted"}
        forged = jwt.utils.base64url_encode(json.dumps(tampered_claims).encode()).decode()
        bad = tmp_path / "tampered.jws"
        bad.write_text(f"{header}.{forged}.{signature}")
        refused = runner.invoke(koppel, ["receipt", "verify", str(bad), "--jwks", str(saved)])
        assert refused.exit_code == 1
        assert "does not verify" in refused.stderr
        without_new = tmp_path / "old-keys.json"
        without_new.write_text(json.dumps(
            {"keys": [k for k in jwks["keys"] if k["kid"] != new_kid]}))
        unknown = runner.invoke(koppel, ["receipt", "verify", str(good), "--jwks",
                                         str(without_new)])
        assert unknown.exit_code == 1 and new_kid in unknown.stderr


async def test_a_consent_that_changes_only_the_companies_is_an_act(
    settings: Settings, auth_server: AuthServer,
) -> None:
    """The same scopes consented again for more companies, then for fewer: each is
    audited, sent to the app as `connection.updated` (`company_ids`) and signed
    (`companies_added`, then `narrowed`) with the companies it names now."""
    with consent_scene(auth_server, settings, "Company Chooser") as scene:
        app = scene.partner_app
        page = scene.agent.follow(scene.agent.authorize(AuthRequest(app, scope=FIRST_SCOPE)))
        if "/login" in str(page.url):
            page = scene.agent.follow(scene.agent.login(page, scene.user))
        ids = re.findall(r'name="company_id" value="([^"]+)"', page.text)
        assert len(ids) == 2
        done = scene.agent.submit(page, decision="allow", company_id=[ids[0]])
        assert done.status_code in (302, 303), done.text[:300]
        jwks = attestation_jwks(auth_server)
        async with running(create_registry(scene.reg)) as registry:
            [connection] = (await registry.get("/v1/me/connections",
                                               headers=scene.mine)).json()["data"]
            mine = f"/v1/me/connections/{connection['id']}/receipts"
            for chosen, act in ((ids, "companies_added"), ([ids[1]], "narrowed")):
                request = AuthRequest(app, scope=FIRST_SCOPE, extra={"prompt": "consent"})
                page = scene.agent.follow(scene.agent.authorize(request))
                done = scene.agent.submit(page, decision="allow", company_id=chosen)
                assert done.status_code in (302, 303), done.text[:300]
                latest = (await receipts(registry, mine, scene.mine))[-1]
                claims = verified(latest["jws"], jwks, auth_server.url)
                assert claims["act"] == act
                assert sorted(c["id"] for c in claims["companies"]) == sorted(chosen)
        with auth_server.sessions() as session:
            audited = session.exec(select(AuditEvent).where(
                AuditEvent.subject_id == connection["id"],
                AuditEvent.action == "consent.companies_changed")
                .order_by(col(AuditEvent.seq))).all()
            events = session.exec(select(Event).where(
                Event.connection_id == uuid.UUID(connection["id"]),
                Event.type == "connection.updated")).all()
        assert [(a.details["companies_added"], a.details["companies_removed"])
                for a in audited] == [([ids[1]], []), ([], [ids[0]])]
        assert len(events) == 2
        assert all(e.data["changed_fields"] == ["company_ids"] for e in events)
