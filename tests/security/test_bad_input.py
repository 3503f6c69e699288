"""Bad input across the services (SECURITY 33): oversized bodies, deeply nested JSON,
invalid UTF-8, a wrong JSON type, huge / negative / junk `limit`, negative, junk and
forged cursors. Every answer is a 4xx problem document (the OAuth endpoints answer as
the OAuth RFCs say: a 4xx JSON error) and nothing is half-written.

Operations are taken from the OpenAPI documents, so new ones are covered as they come.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from services.auth.app import create_app as create_auth
from services.registry.app import create_app as create_registry
from services.sync.app import create_app as create_sync
from tests.security.conftest import Pair, changed_tables, fingerprint
from tests.security.test_isolation_matrix import (
    EXAMPLES,
    PARAM_KINDS,
    _schema,
    example_body,
    operations,
)
from tests.services.conftest import running

SERVICES = {"auth": create_auth, "registry": create_registry, "sync": create_sync}
CALLERS = ("accountant", "master_client", "partner_app", "connection")
BODIES = {
    "oversized": b'{"reason": "' + b"x" * 3_000_000 + b'", "name": "' + b"y" * 10 + b'"}',
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "deep object": b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
    "invalid utf-8": b'{"reason": "\xff\xfe\xfd", "name": "\xc3\x28", "url": "\xed\xa0\x80"}',
    "not json": b"reason=x&name=y",
    "wrong type": b'[{"reason": "x"}]',
}
# Valid JSON that PostgreSQL cannot store in a text column: refused or stored, never a 500.
NUL = "a\x00b"
FORM_BODIES = {
    "oversized": b"grant_type=" + b"x" * 3_000_000,
    "invalid utf-8": b"grant_type=authorization_code&code=\xff\xfe&client_id=\xc3\x28",
    "deeply nested": b"[" * 100_000,
}
LIMITS = ["1000000000000000000000", "-1", "0", "abc", "1e3", "99999", "", "1.5"]
CURSORS = ["-1", "0", "garbage", "A" * 5000, "%00", "..",
           base64.urlsafe_b64encode(b'{"id": "00000000-0000-0000-0000-000000000000"}').decode(),
           base64.urlsafe_b64encode(b"[\"'; DROP TABLE users; --\"]").decode() + ".AAAA"]
OAUTH_PATHS = {"/token", "/par", "/revoke", "/introspect", "/login", "/consent", "/logout",
               "/userinfo"}


def _own_path(pair: Pair, path: str) -> str:
    own = {name: pair.a.ids(kind)[0] for name, kind in PARAM_KINDS.items()}
    own["challenge"] = "x"
    own["sha256"] = "0" * 64  # a scope wording's hash (public; none has it: 404)
    return path.format(**own)


def _assert_problem(response: httpx.Response, what: str, path: str) -> str | None:
    """A failure message, or None if the answer is a proper 4xx."""
    if not 400 <= response.status_code < 500:
        return f"{what}: {path} -> {response.status_code} {response.text[:150]!r}"
    kind = response.headers.get("content-type", "")
    if path in OAUTH_PATHS or path.startswith("/oauth2/register"):
        ok = kind.startswith(("application/json", "application/problem+json", "text/html"))
    else:
        ok = kind == "application/problem+json"
    return None if ok else f"{what}: {path} -> {response.status_code} {kind}"


def _body_operations(document: dict) -> list[tuple[str, str, str | None]]:
    """(method, path, media type) of every operation that documents a request body."""
    result = []
    for method, path, operation in operations(document):
        content = operation.get("requestBody", {}).get("content", {})
        if content or (method in ("POST", "PUT") and path.startswith("/oauth2/register")):
            result.append((method, path, next(iter(content), None)))
    return result


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_line33_bad_bodies_are_4xx_problems_and_write_nothing(
    service: str, pair: Pair, engine: Engine
) -> None:
    app = SERVICES[service](pair.world.settings)
    failures: list[str] = []
    before = fingerprint(engine)
    async with running(app) as client:
        for method, template, media_type in _body_operations(app.openapi()):
            path = _own_path(pair, template)
            form = media_type == "application/x-www-form-urlencoded"
            bodies = FORM_BODIES if form else BODIES
            for (what, body), caller in ((b, c) for b in bodies.items() for c in CALLERS):
                headers = {**pair.headers(caller),
                           "Content-Type": media_type or "application/json"}
                response = await client.request(method, path, content=body, headers=headers)
                if failure := _assert_problem(response, f"{caller} {what} {method}", template):
                    failures.append(failure)
    assert not failures, "\n".join(sorted(set(failures))[:30])
    assert changed_tables(before, fingerprint(engine)) == []


def _list_operations(document: dict) -> list[tuple[str, set[str]]]:
    result = []
    for method, path, operation in operations(document):
        names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        if method == "GET" and names & {"limit", "cursor"}:
            result.append((path, names))
    return result


@pytest.mark.parametrize("service", ["registry", "sync"])
async def test_line33_bad_limits_and_cursors_are_4xx_problems(service: str, pair: Pair,
                                                             engine: Engine) -> None:
    app = SERVICES[service](pair.world.settings)
    failures: list[str] = []
    lists = _list_operations(app.openapi())
    assert len(lists) >= 4
    before = fingerprint(engine)
    async with running(app) as client:
        for template, names in lists:
            path = _own_path(pair, template)
            for caller in CALLERS:
                headers = pair.headers(caller)
                accepted = await client.get(path, headers=headers)
                if accepted.status_code != 200:
                    continue  # not this caller's list: its refusal is tested elsewhere
                probes: list[tuple[str, dict[str, Any]]] = []
                if "limit" in names:
                    probes += [(f"limit={v!r}", {"limit": v}) for v in LIMITS]
                if "cursor" in names:
                    probes += [(f"cursor={v[:20]!r}", {"cursor": v}) for v in CURSORS]
                for what, params in probes:
                    response = await client.get(path, params=params, headers=headers)
                    if failure := _assert_problem(response, f"{caller} {what}", template):
                        failures.append(failure)
    assert not failures, "\n".join(sorted(set(failures))[:30])
    assert changed_tables(before, fingerprint(engine)) == []


@pytest.mark.parametrize("service", ["registry", "sync"])
async def test_line33_tampered_and_transplanted_cursors_are_refused(service: str,
                                                                   pair: Pair) -> None:
    """A genuine cursor with one character changed, or taken from another list, is 400;
    never a page of somebody else's rows."""
    app = SERVICES[service](pair.world.settings)
    lists = _list_operations(app.openapi())
    foreign = pair.b.all_ids()
    genuine: list[tuple[str, str, str]] = []  # (path, caller, cursor)
    async with running(app) as client:
        for template, names in lists:
            if not {"limit", "cursor"} <= names:
                continue
            path = _own_path(pair, template)
            for caller in CALLERS:
                response = await client.get(path, params={"limit": 1},
                                            headers=pair.headers(caller))
                cursor = response.json().get("next_cursor") if response.status_code == 200 \
                    else None
                if cursor:
                    genuine.append((path, caller, cursor))
        assert len(genuine) >= 3, genuine
        for path, caller, cursor in genuine:
            for index in (0, len(cursor) // 2, len(cursor) - 1):
                flipped = "A" if cursor[index] != "A" else "B"
                tampered = cursor[:index] + flipped + cursor[index + 1:]
                response = await client.get(path, params={"cursor": tampered},
                                            headers=pair.headers(caller))
                assert response.status_code == 400, (path, caller, response.text)
            for other_path, _, other_cursor in genuine:
                if other_path == path:
                    continue
                response = await client.get(path, params={"cursor": other_cursor},
                                            headers=pair.headers(caller))
                assert response.status_code in (200, 400), (path, other_path, response.text)
                assert not {i for i in foreign if i in response.text}


async def test_line33_json_body_limit_holds_for_chunked_bodies(pair: Pair) -> None:
    """A body without Content-Length is cut off at the limit too (sync)."""
    async def chunks():
        for _ in range(64):
            yield b"x" * 65536

    async with running(create_sync(pair.world.settings)) as client:
        employee = pair.a.ids("employee")[0]
        response = await client.patch(f"/v1/employees/{employee}", content=chunks(),
                                      headers={**pair.headers("accountant"),
                                               "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert json.loads(response.text)["status"] == 413


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_line33_nul_characters_never_give_a_server_error(service: str,
                                                              pair: Pair) -> None:
    """Each string field of a valid body in turn carries a NUL character."""
    app = SERVICES[service](pair.world.settings)
    document = app.openapi()
    failures = []
    async with running(app) as client:
        for method, template, operation in operations(document):
            if "application/json" not in operation.get("requestBody", {}).get("content", {}):
                continue
            body = _full_example(document, operation)
            for name in [n for n, v in body.items() if isinstance(v, str)]:
                for caller in CALLERS:
                    response = await client.request(
                        method, _own_path(pair, template), json={**body, name: NUL},
                        headers=pair.headers(caller))
                    if response.status_code >= 500:
                        failures.append(f"{caller} {method} {template} {name} -> "
                                        f"{response.status_code}")
    assert not failures, "\n".join(failures)


def _full_example(document: dict, operation: dict) -> dict[str, Any]:
    """A valid body with every property the examples know (not only the required)."""
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].split("/")[-1]]
    if "anyOf" in schema:
        schema = _schema(document, next(s for s in schema["anyOf"] if s.get("type") != "null"))
    properties = schema.get("properties", {})
    body = example_body(document, operation) or {}
    return {**body, **{n: EXAMPLES[n] for n in properties if n in EXAMPLES}}
