"""A small fuzz over every registry operation (SECURITY 32, 33): junk path ids, query
values and bodies, as each kind of caller, never answer 5xx and never a non-problem
error (the OAuth registration endpoint answers RFC 7591 errors)."""

from __future__ import annotations

import re

import httpx

from services.registry.app import create_app
from tests.services.registry.conftest import World, bearer

JUNK = ["", "x", "-1", "0", "9" * 40, "%00", "a\x00b", "null", "../../etc", "é", "a" * 600,
        "01a20e71-fc1d-77cf-8f69-d186538d37e2"]
BODIES = [None, b"", b"{}", b"[]", b"null", b'{"reason": 1}', b'{"filter": []}', b"\xff",
          b'{"reason": "a\\u0000b", "name": "a\\u0000b", "client_name": "a\\u0000b"}',
          b'{"blocked": true, "reason": "' + b"x" * 5000 + b'"}']


async def test_no_operation_answers_5xx(client: httpx.AsyncClient, world: World) -> None:
    document = create_app(world.settings).openapi()
    callers = {
        "none": {},
        "accountant": bearer(world.user_token(world.a.users["accountant"])),
        "employee": bearer(world.user_token(world.a.users["employee"])),
        "partner app": bearer(world.app_token(world.apps[0])),
        "provisioner": bearer(world.app_token(world.first_party, "directory.manage")),
    }
    seen = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            query_names = [p["name"] for p in operation.get("parameters", [])
                           if p["in"] == "query"]
            for i, junk in enumerate(JUNK):
                url = re.sub(r"\{[^}]+\}", (junk or "x").replace("\x00", "%00"), path)
                params = {name: junk for name in query_names}
                body = BODIES[i % len(BODIES)]
                for name, headers in callers.items():
                    response = await client.request(
                        method.upper(), url, params=params, content=body,
                        headers={**headers, "Content-Type": "application/json"})
                    seen += 1
                    assert response.status_code < 500, (name, method, url, response.text[:300])
                    if response.status_code >= 400 and not path.startswith("/oauth2/"):
                        assert response.headers["content-type"] == "application/problem+json", (
                            name, method, url)
    assert seen > 500
