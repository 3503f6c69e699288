"""DPoP (RFC 9449) end to end: proofs made with joserfc by the test (the client), tokens
from the real auth service over HTTP, and calls to the sync service running on the auth
service's database and Redis, exactly as a partner's DPoP client would make them."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from services.auth.app import create_app as create_auth_app
from services.sync.app import create_app as create_sync_app
from shared.config import Settings
from tests.fixtures.auth_server import AuthServer, Client
from tests.fixtures.dpop import ALGS, DPoPKey, mac_proof, unsigned_proof
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    User,
    authorization_code,
    client_auth,
    introspect,
    verified_jwt,
)
from tests.services.conftest import running

SCOPE = "openid company.info.read offline_access"
ALGS_CHALLENGE = 'algs="ES256 PS256 EdDSA Ed25519"'


def token_request(server: AuthServer, client: Client, data: dict[str, str],
                  proof: str | list[str] | None = None) -> httpx.Response:
    """A token request of `client`, with the given DPoP header(s)."""
    form, auth = client_auth(client, data)
    proofs = [proof] if isinstance(proof, str) else (proof or [])
    headers = [("DPoP", value) for value in proofs]
    with httpx.Client(timeout=30) as http:
        return http.post(f"{server.url}/token", data=form, auth=auth, headers=headers)


def exchange(server: AuthServer, request: AuthRequest, code: str,
             proof: str | None) -> httpx.Response:
    return token_request(server, request.client, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": request.target,
        "code_verifier": request.pkce.verifier}, proof)


def app_token(server: AuthServer, client: Client, key: DPoPKey | None) -> httpx.Response:
    proof = key.proof("POST", f"{server.url}/token") if key else None
    return token_request(server, client, {"grant_type": "client_credentials"}, proof)


def dpop_error(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]


def sync_settings(settings: Settings, server: AuthServer, **update: Any) -> Settings:
    return settings.model_copy(update={
        "database_url": server.engine.url.render_as_string(hide_password=False),
        "redis_url": server.redis_url, "issuer": server.url, "auth_url": server.url,
        "webhooks_allow_loopback": True, **update,
    })


@pytest.fixture
async def sync_api(settings: Settings, auth_server: AuthServer
                   ) -> AsyncIterator[httpx.AsyncClient]:
    """The sync service on the auth service's database and Redis (lifespan running)."""
    async with running(create_sync_app(sync_settings(settings, auth_server))) as client:
        yield client


def dpop_call(key: DPoPKey, token: str, method: str, url: str, **proof: Any
              ) -> dict[str, str]:
    """The headers of a DPoP-bound call to `url` (the sync service's public URL)."""
    return {"Authorization": f"DPoP {token}",
            "DPoP": key.proof(method, url, access_token=token, **proof)}


@pytest.fixture
def linked(auth_server: AuthServer, new_app: Callable[..., Client],
           new_user: Callable[..., User], browser: Callable[..., Browser]
           ) -> Callable[..., tuple[AuthRequest, dict[str, Any], DPoPKey]]:
    """A code flow with `dpop_jkt` and a DPoP-proved exchange: request, tokens, key."""

    def link(scope: str = SCOPE, **app_fields: Any
             ) -> tuple[AuthRequest, dict[str, Any], DPoPKey]:
        key = DPoPKey()
        request = AuthRequest(new_app(**app_fields), scope=scope,
                              extra={"dpop_jkt": key.jkt})
        code = authorization_code(browser(), request, new_user())
        response = exchange(auth_server, request, code,
                            key.proof("POST", f"{auth_server.url}/token"))
        assert response.status_code == 200, response.text
        return request, response.json(), key

    return link


async def test_code_flow_with_dpop_jkt_gives_a_bound_token_that_sync_accepts_with_a_proof(
        auth_server: AuthServer, settings: Settings, sync_api: httpx.AsyncClient,
        linked) -> None:
    _, tokens, key = linked(auth_method="none")
    assert tokens["token_type"] == "DPoP"
    _, claims = verified_jwt(auth_server, tokens["access_token"], "ES256")
    assert claims["cnf"] == {"jkt": key.jkt}
    token = tokens["access_token"]
    url = f"{settings.sync_url}/v1/companies"
    answer = await sync_api.get("/v1/companies", headers=dpop_call(key, token, "GET", url))
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]

    # Userinfo is a protected resource too: DPoP with a proof, never Bearer.
    with httpx.Client(timeout=30) as http:
        info = http.get(f"{auth_server.url}/userinfo", headers=dpop_call(
            key, token, "GET", f"{auth_server.url}/userinfo"))
        assert info.status_code == 200, info.text
        as_bearer = http.get(f"{auth_server.url}/userinfo",
                             headers={"Authorization": f"Bearer {token}"})
        assert as_bearer.status_code == 401


async def test_sync_refuses_every_bad_proof_and_a_bound_token_as_bearer(
        settings: Settings, sync_api: httpx.AsyncClient, linked) -> None:
    _, tokens, key = linked(auth_method="none")
    token = tokens["access_token"]
    url = f"{settings.sync_url}/v1/companies"

    async def refused(headers: dict[str, str], error: str = "invalid_dpop_proof") -> str:
        answer = await sync_api.get("/v1/companies", headers=headers)
        assert answer.status_code == 401, answer.text
        challenge = answer.headers["www-authenticate"]
        assert f'DPoP error="{error}"' in challenge or f'Bearer error="{error}"' in challenge
        assert ALGS_CHALLENGE in challenge
        return answer.json()["detail"]

    as_bearer = {"Authorization": f"Bearer {token}", "DPoP": key.proof("GET", url,
                                                                       access_token=token)}
    assert "DPoP-bound" in await refused(as_bearer, "invalid_token")
    once = dpop_call(key, token, "GET", url)
    assert (await sync_api.get("/v1/companies", headers=once)).status_code == 200
    assert "used before" in await refused(once)  # the same jti again
    assert "htm" in await refused(dpop_call(key, token, "POST", url))
    assert "htu" in await refused(dpop_call(key, token, "GET", url + "/elsewhere"))
    assert "htu" in await refused(dpop_call(key, token, "GET", "http://testserver/v1/companies"))
    assert "ath" in await refused({"Authorization": f"DPoP {token}", "DPoP": key.proof(
        "GET", url, access_token=token + "x")})
    assert "another key" in await refused(dpop_call(DPoPKey(), token, "GET", url))
    assert "iat" in await refused(dpop_call(key, token, "GET", url, iat=time.time() - 600))
    assert "typ" in await refused(dpop_call(key, token, "GET", url, header={"typ": "jwt"}))
    assert "alg" in await refused({"Authorization": f"DPoP {token}",
                                   "DPoP": unsigned_proof("GET", url, key.public_jwk)})
    assert "alg" in await refused({"Authorization": f"DPoP {token}",
                                   "DPoP": mac_proof("GET", url)})
    assert "private" in await refused(dpop_call(
        key, token, "GET", url, header={"jwk": key.key.as_dict(private=True)}))
    assert "proof header" in await refused({"Authorization": f"DPoP {token}"})
    two = [("Authorization", f"DPoP {token}"),
           ("DPoP", key.proof("GET", url, access_token=token)),
           ("DPoP", key.proof("GET", url, access_token=token))]
    answer = await sync_api.get("/v1/companies", headers=two)
    assert answer.status_code == 401 and "exactly one" in answer.json()["detail"]


async def test_a_dpop_call_counts_once_against_syncs_budgets_and_a_replay_not_at_all(
        settings: Settings, sync_api: httpx.AsyncClient, linked) -> None:
    """Sync reserves the proof's jti in its rate-limit call (one Redis round trip): the
    call is counted once, and a replayed proof is refused without being counted."""
    _, tokens, key = linked(auth_method="none")
    token, url = tokens["access_token"], f"{settings.sync_url}/v1/companies"

    def remaining(answer: httpx.Response) -> int:
        assert answer.status_code == 200, answer.text
        policy, _, rest = answer.headers["ratelimit"].partition(";r=")
        assert policy == '"connection"'
        return int(rest.partition(";")[0])

    first = dpop_call(key, token, "GET", url)
    before = remaining(await sync_api.get("/v1/companies", headers=first))
    assert (await sync_api.get("/v1/companies", headers=first)).status_code == 401
    after = remaining(await sync_api.get("/v1/companies",
                                         headers=dpop_call(key, token, "GET", url)))
    assert before - after == 1


async def test_a_dpop_bound_code_needs_a_proof_of_its_key_and_stays_for_its_owner(
        auth_server: AuthServer, new_app, new_user, browser) -> None:
    key = DPoPKey()
    request = AuthRequest(new_app(auth_method="none"), scope=SCOPE, extra={"dpop_jkt": key.jkt})
    code = authorization_code(browser(), request, new_user())
    token_url = f"{auth_server.url}/token"
    assert dpop_error(exchange(auth_server, request, code, None)) == "invalid_dpop_proof"
    thief = exchange(auth_server, request, code, DPoPKey().proof("POST", token_url))
    assert dpop_error(thief) == "invalid_grant"
    # Neither attempt spent the code: its owner redeems it.
    owner = exchange(auth_server, request, code, key.proof("POST", token_url))
    assert owner.status_code == 200, owner.text
    assert owner.json()["token_type"] == "DPoP"


def test_a_malformed_dpop_jkt_is_refused_at_authorize(auth_server: AuthServer, new_app,
                                                      browser) -> None:
    request = AuthRequest(new_app(), scope=SCOPE, extra={"dpop_jkt": "short"})
    answer = browser().authorize(request)
    assert answer.status_code == 303
    assert "error=invalid_request" in answer.headers["location"]


def test_a_public_clients_refresh_token_is_bound_to_its_key(auth_server: AuthServer,
                                                             linked) -> None:
    request, tokens, key = linked(auth_method="none")
    token_url = f"{auth_server.url}/token"
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    client = request.client
    assert dpop_error(token_request(auth_server, client, data)) == "invalid_dpop_proof"
    other = token_request(auth_server, client, data, DPoPKey().proof("POST", token_url))
    assert dpop_error(other) == "invalid_grant"
    renewed = token_request(auth_server, client, data, key.proof("POST", token_url))
    assert renewed.status_code == 200, renewed.text
    body = renewed.json()
    assert body["token_type"] == "DPoP"
    _, claims = verified_jwt(auth_server, body["access_token"], "ES256")
    assert claims["cnf"] == {"jkt": key.jkt}
    # The next refresh token is bound the same way.
    again = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    assert dpop_error(token_request(auth_server, client, again,
                                    DPoPKey().proof("POST", token_url))) == "invalid_grant"


def test_a_confidential_clients_refresh_token_is_not_bound(auth_server: AuthServer,
                                                           linked) -> None:
    request, tokens, _ = linked()
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    plain = token_request(auth_server, request.client, data)
    assert plain.status_code == 200, plain.text
    assert plain.json()["token_type"] == "Bearer"
    # A new access token is bound to whichever key the refresh proves.
    other = DPoPKey()
    data["refresh_token"] = plain.json()["refresh_token"]
    bound = token_request(auth_server, request.client, data,
                          other.proof("POST", f"{auth_server.url}/token"))
    assert bound.status_code == 200, bound.text
    _, claims = verified_jwt(auth_server, bound.json()["access_token"], "ES256")
    assert claims["cnf"] == {"jkt": other.jkt}


def test_introspection_shows_the_binding(auth_server: AuthServer, new_app) -> None:
    client = new_app()
    key = DPoPKey()
    token = app_token(auth_server, client, key).json()["access_token"]
    found = introspect(auth_server, client, token)
    assert found["active"] is True
    assert found["token_type"] == "DPoP"
    assert found["cnf"] == {"jkt": key.jkt}
    plain = app_token(auth_server, client, None).json()["access_token"]
    assert introspect(auth_server, client, plain)["token_type"] == "Bearer"


def test_a_client_registered_for_dpop_must_send_a_proof(auth_server: AuthServer,
                                                        new_app) -> None:
    client = new_app(dpop_bound_access_tokens=True)
    refused = app_token(auth_server, client, None)
    assert dpop_error(refused) == "invalid_dpop_proof"
    assert "dpop_bound_access_tokens" in refused.json()["error_description"]
    granted = app_token(auth_server, client, DPoPKey())
    assert granted.status_code == 200 and granted.json()["token_type"] == "DPoP"


def test_the_token_endpoint_refuses_bad_proofs(auth_server: AuthServer, new_app) -> None:
    client = new_app()
    key = DPoPKey()
    token_url = f"{auth_server.url}/token"

    def refused(proof: str | list[str]) -> str:
        answer = token_request(auth_server, client, {"grant_type": "client_credentials"},
                               proof)
        assert dpop_error(answer) == "invalid_dpop_proof"
        assert "access_token" not in answer.json()
        return answer.json()["error_description"]

    proof = key.proof("POST", token_url)
    assert token_request(auth_server, client, {"grant_type": "client_credentials"},
                         proof).status_code == 200
    assert "used before" in refused(proof)
    assert "htm" in refused(key.proof("GET", token_url))
    assert "htu" in refused(key.proof("POST", f"{auth_server.url}/revoke"))
    assert "iat" in refused(key.proof("POST", token_url, iat=time.time() - 3600))
    assert "typ" in refused(key.proof("POST", token_url, header={"typ": "JWT"}))
    assert "alg" in refused(unsigned_proof("POST", token_url, key.public_jwk))
    assert "alg" in refused(mac_proof("POST", token_url))
    assert "private" in refused(key.proof("POST", token_url,
                                          header={"jwk": key.key.as_dict(private=True)}))
    assert "exactly one" in refused([key.proof("POST", token_url),
                                     key.proof("POST", token_url)])


@pytest.mark.parametrize("alg", ALGS)
async def test_each_advertised_algorithm_works_at_the_token_endpoint_and_at_sync(
        auth_server: AuthServer, settings: Settings, sync_api: httpx.AsyncClient,
        new_app, alg: str) -> None:
    metadata = httpx.get(f"{auth_server.url}/.well-known/openid-configuration").json()
    assert alg in metadata["dpop_signing_alg_values_supported"]
    key = DPoPKey(alg)
    granted = app_token(auth_server, new_app(), key)
    assert granted.status_code == 200, granted.text
    token = granted.json()["access_token"]
    url = f"{settings.sync_url}/v1/webhooks"
    answer = await sync_api.get("/v1/webhooks", headers=dpop_call(key, token, "GET", url))
    assert answer.status_code == 200, answer.text


async def test_idempotent_writes_check_the_proof_before_replaying(
        auth_server: AuthServer, settings: Settings, sync_api: httpx.AsyncClient,
        new_app) -> None:
    key = DPoPKey()
    token = app_token(auth_server, new_app(), key).json()["access_token"]
    url = f"{settings.sync_url}/v1/webhooks"
    body = {"url": "http://127.0.0.1:9/hook", "events": ["employee.updated"]}
    idem = {"Idempotency-Key": secrets.token_hex(8)}
    first = dpop_call(key, token, "POST", url)
    created = await sync_api.post("/v1/webhooks", json=body, headers={**first, **idem})
    assert created.status_code == 201, created.text
    again = await sync_api.post("/v1/webhooks", json=body,
                                headers={**dpop_call(key, token, "POST", url), **idem})
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    # The stored answer is never handed to a request whose proof the route would refuse.
    replayed = await sync_api.post("/v1/webhooks", json=body, headers={**first, **idem})
    assert replayed.status_code == 401 and "used before" in replayed.json()["detail"]
    as_bearer = await sync_api.post("/v1/webhooks", json=body, headers={
        "Authorization": f"Bearer {token}", **idem})
    assert as_bearer.status_code == 401
    assert "secret" not in replayed.text and "secret" not in as_bearer.text


async def test_server_nonces_when_switched_on(auth_server: AuthServer, settings: Settings,
                                              new_app) -> None:
    """With KOPPEL_DPOP_NONCE_REQUIRED the token endpoint (400) and sync (401) answer
    use_dpop_nonce with a DPoP-Nonce; a proof with that nonce then goes through."""
    strict = sync_settings(settings, auth_server, dpop_nonce_required=True)
    client, key = new_app(), DPoPKey()
    token_url = f"{auth_server.url}/token"
    form, auth = client_auth(client, {"grant_type": "client_credentials"})
    async with running(create_auth_app(strict)) as auth_api:
        first = await auth_api.post("/token", data=form, auth=auth,
                                    headers={"DPoP": key.proof("POST", token_url)})
        assert dpop_error(first) == "use_dpop_nonce"
        nonce = first.headers["dpop-nonce"]
        granted = await auth_api.post("/token", data=form, auth=auth, headers={
            "DPoP": key.proof("POST", token_url, nonce=nonce)})
        assert granted.status_code == 200, granted.text
        assert granted.headers["dpop-nonce"]
        token = granted.json()["access_token"]
    url = f"{settings.sync_url}/v1/webhooks"
    async with running(create_sync_app(strict)) as sync_api:
        asked = await sync_api.get("/v1/webhooks", headers=dpop_call(key, token, "GET", url))
        assert asked.status_code == 401
        assert 'DPoP error="use_dpop_nonce"' in asked.headers["www-authenticate"]
        nonce = asked.headers["dpop-nonce"]
        answer = await sync_api.get("/v1/webhooks", headers=dpop_call(key, token, "GET", url,
                                                                      nonce=nonce))
        assert answer.status_code == 200, answer.text


async def test_an_unbound_token_stays_a_bearer_token(
        auth_server: AuthServer, settings: Settings, sync_api: httpx.AsyncClient,
        new_app) -> None:
    """RFC 9449 section 7.2 only forbids the downgrade of a bound token: an unbound one
    is a bearer token, a DPoP header beside it changes nothing, and the DPoP scheme
    (which promises a binding it does not have) is refused for it."""
    key = DPoPKey()
    token = app_token(auth_server, new_app(), None).json()["access_token"]
    url = f"{settings.sync_url}/v1/webhooks"
    beside = await sync_api.get("/v1/webhooks", headers={
        "Authorization": f"Bearer {token}", "DPoP": key.proof("GET", url, access_token=token)})
    assert beside.status_code == 200, beside.text
    as_dpop = await sync_api.get("/v1/webhooks", headers=dpop_call(key, token, "GET", url))
    assert as_dpop.status_code == 401
    assert as_dpop.headers["www-authenticate"].startswith('Bearer, DPoP error="invalid_token"')
    assert "not DPoP-bound" in as_dpop.json()["detail"]


async def test_the_directly_served_employee_read_checks_the_proof_like_every_route(
        settings: Settings, sync_api: httpx.AsyncClient, linked) -> None:
    """GET /v1/employees/{id} is served without FastAPI's dependency solving
    (shared/direct_route.py): a DPoP-bound token still needs a fresh proof for this
    method, this URL and this token, and is refused as Bearer."""
    _, tokens, key = linked(auth_method="none",
                            scope="openid company.info.read employee.info.read offline_access")
    token = tokens["access_token"]

    async def get(path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        url = f"{settings.sync_url}{path}"
        return await sync_api.get(path, headers=headers or dpop_call(key, token, "GET", url))

    company = (await get("/v1/companies")).json()["data"][0]["id"]
    employees = (await get(f"/v1/companies/{company}/employees")).json()["data"]
    first, other = employees[0]["id"], uuid.uuid4()
    path = f"/v1/employees/{first}"
    url = f"{settings.sync_url}{path}"
    once = dpop_call(key, token, "GET", url)
    answer = await get(path, once)
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == first
    for headers, detail in [
        (once, "used before"),  # the same jti again
        (dpop_call(key, token, "GET", f"{settings.sync_url}/v1/employees/{other}"), "htu"),
        ({"Authorization": f"Bearer {token}"}, "DPoP-bound"),
        ({"Authorization": f"DPoP {token}"}, "proof"),
    ]:
        refused = await get(path, headers)
        assert refused.status_code == 401, (detail, refused.text)
        assert detail in refused.json()["detail"], refused.json()
