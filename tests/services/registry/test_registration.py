"""RFC 7591/7592 dynamic client registration at /oauth2/register, and the public scope
catalogue (SPEC 5.1, section 4)."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlmodel import select

from shared.models import App, Connection
from shared.vault import KeyRing, TokenKind, digest_matches, new_token, token_digest
from tests.cli.conftest import Invoke, cli_env, invoke  # noqa: F401 - fixtures
from tests.services.registry.conftest import World, bearer

GOOD = {
    "client_name": "Shift Planner", "redirect_uris": ["https://planner.example/cb",
                                                      "http://127.0.0.1:8080/cb"],
    "scope": "company.info.read employee.info.read offline_access",
    "grant_types": ["authorization_code", "refresh_token"],
    "client_uri": "https://planner.example", "contacts": ["dev@planner.example"],
}


async def test_register_read_update_delete(client: httpx.AsyncClient, world: World,
                                           initial_token: str, keyring: KeyRing) -> None:
    response = await client.post("/oauth2/register", json=GOOD, headers=bearer(initial_token))
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    secret, rat = body["client_secret"], body["registration_access_token"]
    assert body["client_name"] == "Shift Planner" and body["client_secret_expires_at"] == 0
    assert body["registration_client_uri"].endswith(f"/oauth2/register/{body['client_id']}")
    with world.sessions() as session:
        app = session.exec(select(App).where(App.client_id == body["client_id"])).one()
        assert digest_matches(keyring.digest_key, secret, app.client_secret_digest)
        assert secret not in str(app.model_dump()) and rat not in str(app.model_dump())
        assert app.publisher == "Planner Co" and app.scopes == GOOD["scope"].split()

    path = f"/oauth2/register/{body['client_id']}"
    read = await client.get(path, headers=bearer(rat))
    assert read.status_code == 200 and "client_secret" not in read.json()
    assert (await client.get(path, headers=bearer(initial_token))).status_code == 401
    update = {**GOOD, "client_id": body["client_id"], "client_name": "Shift Planner 2"}
    updated = await client.put(path, json=update, headers=bearer(rat))
    assert updated.status_code == 200, updated.text
    assert updated.json()["client_name"] == "Shift Planner 2"
    assert "client_secret" not in updated.json()
    assert updated.headers["cache-control"] == "no-store"
    # RFC 7592 section 3: the update rotates the registration access token.
    new_rat = updated.json()["registration_access_token"]
    assert new_rat != rat
    for method in ("GET", "PUT", "DELETE"):
        stale = await client.request(method, path, json=update, headers=bearer(rat))
        assert stale.status_code == 401, (method, stale.text)
        assert stale.headers["www-authenticate"].startswith("Bearer")
    with world.sessions() as session:
        app = session.exec(select(App).where(App.client_id == body["client_id"])).one()
        assert digest_matches(keyring.digest_key, new_rat, app.registration_access_token_digest)
        assert app.name == "Shift Planner 2"
    assert (await client.get(path, headers=bearer(new_rat))).json()["client_name"] \
        == "Shift Planner 2"
    # A refused update rotates nothing: the token of the last good update still works.
    wrong = await client.put(path, json={**update, "client_id": "other"},
                             headers=bearer(new_rat))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_client_metadata"
    assert "registration_access_token" not in wrong.json()
    assert (await client.get(path, headers=bearer(new_rat))).status_code == 200

    deleted = await client.delete(path, headers=bearer(new_rat))
    assert deleted.status_code == 204
    assert (await client.get(path, headers=bearer(new_rat))).status_code == 401


@pytest.mark.parametrize(("change", "error"), [
    ({"redirect_uris": ["http://planner.example/cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://planner.example/cb#frag"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri"),
    ({"redirect_uris": []}, "invalid_redirect_uri"),
    ({"redirect_uris": "https://planner.example/cb"}, "invalid_client_metadata"),
    ({"scope": "directory.manage"}, "invalid_client_metadata"),
    ({"scope": "everything"}, "invalid_client_metadata"),
    ({"client_name": ""}, "invalid_client_metadata"),
    ({"grant_types": ["password"]}, "invalid_client_metadata"),
    ({"grant_types": ["implicit"]}, "invalid_client_metadata"),
    ({"token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
    ({"token_endpoint_auth_method": "none", "grant_types": ["client_credentials"],
      "redirect_uris": []}, "invalid_client_metadata"),
    ({"logo_uri": "http://cdn.example/logo.png"}, "invalid_client_metadata"),
    ({"jwks": {"keys": [{"kty": "EC", "d": "secret"}]},
      "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
    ({"id_token_signed_response_alg": "HS256"}, "invalid_client_metadata"),
    ({"id_token_signed_response_alg": "none"}, "invalid_client_metadata"),
    ({"post_logout_redirect_uris": ["http://partner.example/bye"]}, "invalid_redirect_uri"),
    ({"post_logout_redirect_uris": "https://partner.example/bye"}, "invalid_client_metadata"),
    ({"require_pushed_authorization_requests": "yes"}, "invalid_client_metadata"),
    ({"dpop_bound_access_tokens": 1}, "invalid_client_metadata"),
])
async def test_bad_metadata_answers_rfc7591_errors(client: httpx.AsyncClient, world: World,
                                                   initial_token: str, change: dict,
                                                   error: str) -> None:
    response = await client.post("/oauth2/register", json={**GOOD, **change},
                                 headers=bearer(initial_token))
    assert response.status_code == 400
    assert response.json()["error"] == error
    with world.sessions() as session:
        assert session.exec(select(App).where(App.name == "Shift Planner")).all() == []


async def test_public_and_private_key_jwt_clients_get_no_secret(
    client: httpx.AsyncClient, initial_token: str
) -> None:
    public = await client.post("/oauth2/register", headers=bearer(initial_token),
                               json={**GOOD, "token_endpoint_auth_method": "none"})
    assert public.status_code == 201 and "client_secret" not in public.json()
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}
    signed = await client.post("/oauth2/register", headers=bearer(initial_token), json={
        **GOOD, "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks})
    assert signed.status_code == 201, signed.text
    assert "client_secret" not in signed.json() and signed.json()["jwks"] == jwks


async def test_the_id_token_algorithm_and_logout_uris_are_kept_not_dropped(
    client: httpx.AsyncClient, world: World, initial_token: str
) -> None:
    made = await client.post("/oauth2/register", headers=bearer(initial_token), json={
        **GOOD, "id_token_signed_response_alg": "ES256",
        "post_logout_redirect_uris": ["https://planner.example/bye"]})
    assert made.status_code == 201, made.text
    assert made.json()["id_token_signed_response_alg"] == "ES256"
    assert made.json()["post_logout_redirect_uris"] == ["https://planner.example/bye"]
    with world.sessions() as session:
        app = session.exec(select(App).where(App.client_id == made.json()["client_id"])).one()
        assert app.id_token_signed_response_alg == "ES256"


async def test_the_fapi_metadata_is_kept_and_defaults_to_false(
    client: httpx.AsyncClient, world: World, initial_token: str
) -> None:
    plain = await client.post("/oauth2/register", headers=bearer(initial_token), json=GOOD)
    assert plain.json()["require_pushed_authorization_requests"] is False
    assert plain.json()["dpop_bound_access_tokens"] is False
    made = await client.post("/oauth2/register", headers=bearer(initial_token), json={
        **GOOD, "require_pushed_authorization_requests": True,
        "dpop_bound_access_tokens": True})
    assert made.status_code == 201, made.text
    assert made.json()["require_pushed_authorization_requests"] is True
    assert made.json()["dpop_bound_access_tokens"] is True
    with world.sessions() as session:
        app = session.exec(select(App).where(App.client_id == made.json()["client_id"])).one()
        assert app.require_pushed_authorization_requests and app.dpop_bound_access_tokens


async def test_without_a_valid_initial_access_token_nothing_registers(
    client: httpx.AsyncClient, world: World, initial_token: str
) -> None:
    for headers in ({}, bearer("kpiat_wrong"), {"Authorization": f"Basic {initial_token}"}):
        response = await client.post("/oauth2/register", json=GOOD, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"
        assert "invalid_token" in response.headers["www-authenticate"]
    bad_json = await client.post("/oauth2/register", content=b"{not json",
                                 headers={**bearer(initial_token),
                                          "Content-Type": "application/json"})
    assert bad_json.status_code == 400
    with world.sessions() as session:
        assert session.exec(select(App).where(App.name == "Shift Planner")).all() == []


async def test_deleting_an_app_revokes_its_connections(
    client: httpx.AsyncClient, world: World, keyring: KeyRing
) -> None:
    rat = new_token(TokenKind.REGISTRATION_ACCESS_TOKEN)
    target = world.apps[1]
    with world.sessions() as session:
        app = session.get(App, target.id)
        app.registration_access_token_digest = token_digest(keyring.digest_key, rat)
        session.add(app)
        session.commit()
    other = await client.delete(f"/oauth2/register/{world.apps[0].client_id}",
                                headers=bearer(rat))
    assert other.status_code == 401
    response = await client.delete(f"/oauth2/register/{target.client_id}", headers=bearer(rat))
    assert response.status_code == 204
    with world.sessions() as session:
        for connection in session.exec(select(Connection)).all():
            expected = "revoked" if connection.app_id == target.id else "active"
            assert connection.status == expected


async def test_the_scope_catalogue_is_public(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/scopes", headers={"Accept-Language": "nl"})
    assert response.status_code == 200
    scopes = {s["scope"]: s for s in response.json()["data"]}
    assert scopes["employee.payment"]["implies"] == ["employee.payment.read"]
    assert scopes["employee.absence.read"]["sensitivity"] == "special_category"
    assert scopes["company.info.read"]["title"] == "Debiteuren en bedrijven inzien"
    assert "directory.manage" not in scopes and "webhooks.manage" in scopes


async def test_a_partner_made_by_the_cli_registers_and_loses_the_right_on_revoke(
    client: httpx.AsyncClient, invoke: Invoke  # noqa: F811
) -> None:
    created = json.loads(invoke("partner", "create", "Cli Partner", "--json").stdout)
    token = created["initial_access_token"]
    response = await client.post("/oauth2/register", json=GOOD, headers=bearer(token))
    assert response.status_code == 201, response.text
    assert invoke("partner", "revoke-token", created["partner"]["id"]).exit_code == 0
    again = await client.post("/oauth2/register", json=GOOD, headers=bearer(token))
    assert again.status_code == 401


def test_the_openapi_document_declares_registration_bodies_and_bearer_tokens(
    settings,
) -> None:
    """So that generic tools (schemathesis, client generators) see what to send."""
    from services.registry.app import create_app

    document = create_app(settings).openapi()
    schemes = document["components"]["securitySchemes"]
    for name in ("InitialAccessToken", "RegistrationAccessToken"):
        assert schemes[name]["type"] == "http" and schemes[name]["scheme"] == "bearer"
    paths = document["paths"]
    register = paths["/oauth2/register"]["post"]
    assert register["security"] == [{"InitialAccessToken": []}]
    body = register["requestBody"]["content"]["application/json"]["schema"]
    assert register["requestBody"]["required"] is True
    assert body["required"] == ["client_name"]
    assert {"redirect_uris", "scope", "grant_types", "jwks", "logo_uri"} <= set(body["properties"])
    for method in ("get", "put", "delete"):
        operation = paths["/oauth2/register/{client_id}"][method]
        assert operation["security"] == [{"RegistrationAccessToken": []}], method
        assert "401" in operation["responses"], method
    update = paths["/oauth2/register/{client_id}"]["put"]["requestBody"]["content"]
    assert set(update["application/json"]["schema"]["required"]) == {"client_name", "client_id"}
    errors = register["responses"]["400"]["content"]["application/json"]["schema"]
    assert errors == {"$ref": "#/components/schemas/RegistrationErrorOut"}
