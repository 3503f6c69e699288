"""SECURITY 39 (issue 14, finding 7): no cache keeps an answer given to a caller with
credentials. The role matrix checks every answer of every access-token operation of
registry and sync, for every caller kind; this walks every operation that the three
OpenAPI documents declare with any credential (registration tokens and HTTP Basic too)
and checks that anonymous public answers keep their own caching."""

from __future__ import annotations

import base64
import re
import uuid

import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from shared.config import Settings
from tests.security.conftest import private
from tests.services.conftest import APP_FACTORIES, running

DOCUMENTS = {name: factory(Settings(_env_file=None)).openapi()
             for name, factory in APP_FACTORIES.items()}
SECURED = sorted(
    (service, method.upper(), path, scheme)
    for service, document in DOCUMENTS.items()
    for path, operations in document["paths"].items()
    for method, operation in operations.items()
    for scheme in {name for requirement in operation.get("security", [])
                   for name in requirement}
)
BASIC = {"clientBasic", "firstPartyBasic"}
# Anonymous answers that are public and may be cached as the route says.
PUBLIC = [("registry", "/v1/scopes"), ("auth", "/.well-known/openid-configuration"),
          ("auth", "/.well-known/jwks.json")]


def _credentials(scheme: str) -> str:
    if scheme in BASIC:
        return "Basic " + base64.b64encode(b"kp_unknown:not-the-secret").decode()
    return "Bearer not-a-valid-token"


def _url(path: str) -> str:
    return re.sub(r"\{client_id\}", "kp_unknown",
                  re.sub(r"\{(?!client_id\})[^}]+\}", lambda _: str(uuid.uuid4()), path))


def test_the_walk_covers_every_declared_credential() -> None:
    assert {service for service, *_ in SECURED} == {"auth", "registry", "sync"}
    assert {scheme for *_, scheme in SECURED} >= {
        "oauth2", "InitialAccessToken", "RegistrationAccessToken", *BASIC}


@pytest.mark.parametrize("service", sorted(APP_FACTORIES))
async def test_line39_every_answer_to_a_caller_with_credentials_is_no_store(
    service: str, settings: Settings, committing_sessions: sessionmaker[Session],
) -> None:
    failures = []
    async with running(APP_FACTORIES[service](settings)) as client:
        for _, method, path, scheme in (s for s in SECURED if s[0] == service):
            response = await client.request(
                method, _url(path), headers={"Authorization": _credentials(scheme)},
                json={} if method in ("POST", "PUT", "PATCH") else None)
            if not private(response):
                failures.append(f"{method} {path} ({scheme}) -> {response.status_code}: "
                                f"{response.headers.get('cache-control')!r}")
        if service == "auth":  # userinfo, also with POST
            for method in ("GET", "POST"):
                response = await client.request(
                    method, "/userinfo", headers={"Authorization": _credentials("oauth2")})
                if not private(response):
                    failures.append(f"{method} /userinfo -> {response.status_code}")
        for public_service, path in PUBLIC:
            if public_service != service:
                continue
            anonymous = await client.get(path)
            assert anonymous.status_code == 200, anonymous.text
            assert not private(anonymous), path
    assert not failures, "\n".join(failures)
