"""Schemathesis on the registration endpoints with real tokens (RFC 7591/7592).

The generic fuzz (tests/security/test_fuzz.py) calls them as tenant roles, which hold no
initial or registration access token, so every answer there is a 401. Here the bodies
that the OpenAPI document describes (and bodies that break it) go out with a partner's
initial access token and the app's current registration access token: every answer is
a 2xx or an RFC 7591 error (never a 5xx or a FastAPI 422), and conforms to the document.
"""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from services.registry.app import create_app
from tests.security.test_fuzz import generated_cases
from tests.services.registry.conftest import World, bearer
from tests.services.registry.test_registration import GOOD

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
RFC7591_ERRORS = {"invalid_redirect_uri", "invalid_client_metadata"}
# Fetched through the SSRF guard on the network: not for a fuzz.
NETWORK_FIELDS = ("logo_uri",)


def _body(case: Any) -> Any:
    body = case.body
    if type(body).__name__ == "NotSet":
        return None
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in NETWORK_FIELDS}
    return body


async def test_registration_endpoints_fuzzed_with_real_tokens(
    client: httpx.AsyncClient, world: World, initial_token: str
) -> None:
    document = create_app(world.settings).openapi()
    schema = schemathesis.openapi.from_dict(document)
    registered = await client.post("/oauth2/register", json=GOOD, headers=bearer(initial_token))
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]
    token = registered.json()["registration_access_token"]
    cases = [(op, case) for op, case in generated_cases(schema, negative=True)
             if op.path.startswith("/oauth2/register") and op.method.upper() != "DELETE"]
    assert {op.method.upper() for op, _ in cases} == {"POST", "GET", "PUT"}
    answers: dict[int, int] = {}
    failures = []
    for operation, case in cases:
        path = operation.path.replace("{client_id}", client_id)
        put = operation.method.upper() == "PUT"
        body = _body(case)
        if put and isinstance(body, dict):
            body = {**body, "client_id": client_id}
        secret = initial_token if operation.method.upper() == "POST" else token
        response = await client.request(
            operation.method.upper(), path, headers=bearer(secret),
            **({"json": body} if operation.method.upper() != "GET" else {}))
        answers[response.status_code] = answers.get(response.status_code, 0) + 1
        if response.status_code == 400:
            if response.json().get("error") not in RFC7591_ERRORS:
                failures.append(f"{case.method} {path}: {response.text[:200]}")
        elif response.status_code not in (200, 201):
            failures.append(f"{case.method} {path} -> {response.status_code} "
                            f"{response.text[:200]}")
        try:
            case.validate_response(response, checks=CHECKS)
        except AssertionError as exc:
            failures.append(f"{case.method} {path}: {str(exc)[:300]}")
        if put and response.status_code == 200:  # the update rotated the token
            token = response.json()["registration_access_token"]
    assert not failures, "\n".join(failures[:10])
    assert answers.get(400) and (answers.get(200) or answers.get(201)), answers
    # After all that, the last token still manages the app.
    final = await client.get(f"/oauth2/register/{client_id}", headers=bearer(token))
    assert final.status_code == 200, final.text
