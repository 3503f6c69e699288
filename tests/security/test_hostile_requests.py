"""Hostile requests on every operation of the three services (SECURITY 33 and 38; issue
14, findings 4 and 5): malformed `Authorization` headers of every scheme, JSON nested
deep or holding lone surrogates, and bodies over the route's limit. No answer is a 5xx;
bodies over the limit are 413 and are not read past the limit; nothing is written.

The operations come from each service's OpenAPI document (auth's too), and each
operation's body limit from its `x-koppel-body-limit`, so a new route is covered as it
is added.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from shared.body_limits import LIMIT_KEY, MAX_JSON_DEPTH, OAUTH_KEY
from shared.models import Partner
from shared.vault import KeyRing, TokenKind, new_token, token_digest
from tests.security.conftest import Pair, changed_tables, fingerprint
from tests.security.test_bad_input import SERVICES, _assert_problem, _full_example, _own_path
from tests.security.test_isolation_matrix import example_body, operations
from tests.services.conftest import running

FORM = "application/x-www-form-urlencoded"
# A form every client-authenticated OAuth endpoint reads (the rest of it is ignored).
OAUTH_FORM = {"grant_type": "client_credentials", "token": "kpat_x", "client_id": "kp_x"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _jws(header: bytes, payload: bytes = b"{}") -> str:
    return f"{_b64(header)}.{_b64(payload)}.{'A' * 86}"


DEEP = b'{"a":' * 5000 + b"1" + b"}" * 5000
NOT_UTF8_TOKEN = _jws(b"\xff").encode()
DEEP_HEADER_TOKEN = _jws(DEEP).encode()
DEEP_PAYLOAD_TOKEN = _jws(b'{"alg":"ES256"}', DEEP).encode()
SURROGATE_KID_TOKEN = _jws(b'{"alg":"ES256","kid":"\\ud800"}').encode()
# name -> the raw header lines the request carries (values as bytes: some are not UTF-8).
AUTHORIZATIONS: dict[str, list[tuple[bytes, bytes]]] = {
    "basic not utf-8": [(b"authorization", b"Basic /w==")],
    "basic raw bytes": [(b"authorization", b"Basic \xff\xfe\xfd")],
    "basic bad base64": [(b"authorization", b"Basic !!!!")],
    "basic no colon": [(b"authorization", b"Basic " + base64.b64encode(b"kp_x"))],
    "basic bad percent": [(b"authorization", b"Basic " + base64.b64encode(b"%ZZ%ff:%"))],
    "basic huge": [(b"authorization", b"Basic " + base64.b64encode(b"k" * 48_000 + b":s"))],
    "basic alone": [(b"authorization", b"Basic")],
    "bearer raw bytes": [(b"authorization", b"Bearer \xff\xfe.\xfd.\x80")],
    "bearer huge": [(b"authorization", b"Bearer " + b"A" * 65_000)],
    "bearer not utf-8 json": [(b"authorization", b"Bearer " + NOT_UTF8_TOKEN)],
    "bearer deep header": [(b"authorization", b"Bearer " + DEEP_HEADER_TOKEN)],
    "bearer deep payload": [(b"authorization", b"Bearer " + DEEP_PAYLOAD_TOKEN)],
    "bearer surrogate kid": [(b"authorization", b"Bearer " + SURROGATE_KID_TOKEN)],
    "bearer alone": [(b"authorization", b"Bearer")],
    "dpop garbage": [(b"authorization", b"DPoP \xff\xfe"), (b"dpop", b"not.a.proof")],
    "dpop deep proof": [(b"authorization", b"DPoP " + b"A" * 40),
                        (b"dpop", DEEP_HEADER_TOKEN)],
    "unknown scheme": [(b"authorization", b"Negotiate \xff" + b"Z" * 20_000)],
    "no scheme": [(b"authorization", b"\xff\xfe")],
    "two headers": [(b"authorization", b"Bearer x"), (b"authorization", b"Basic /w==")],
}


def _request_body(document: dict, operation: dict) -> tuple[bytes | None, str | None]:
    content = operation.get("requestBody", {}).get("content", {})
    if FORM in content:
        return "&".join(f"{k}={v}" for k, v in OAUTH_FORM.items()).encode(), FORM
    if "application/json" in content:
        return json.dumps(example_body(document, operation) or {}).encode(), "application/json"
    return None, None


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_line38_malformed_authorization_is_never_a_server_error(
    service: str, pair: Pair, engine: Engine,
) -> None:
    app = SERVICES[service](pair.world.settings)
    document = app.openapi()
    failures: list[str] = []
    before = fingerprint(engine)
    async with running(app) as client:
        for method, template, operation in operations(document):
            body, media_type = _request_body(document, operation)
            protected = bool(operation.get("security")) and {} not in operation["security"]
            for what, lines in AUTHORIZATIONS.items():
                headers = httpx.Headers(lines + ([(b"content-type", media_type.encode())]
                                                 if media_type else []))
                response = await client.request(method, _own_path(pair, template),
                                                content=body, headers=headers)
                if response.status_code >= 500 or (protected and response.status_code < 400):
                    failures.append(f"{what}: {method} {template} -> {response.status_code} "
                                    f"{response.text[:120]!r}")
    assert not failures, "\n".join(failures[:30]) + f"\n({len(failures)} failures)"
    assert changed_tables(before, fingerprint(engine)) == []


def _initial_token(pair: Pair, keyring: KeyRing) -> str:
    """A partner's RFC 7591 initial access token (for the registration operation)."""
    token = new_token(TokenKind.INITIAL_ACCESS_TOKEN)
    with pair.world.sessions() as session:
        session.add(Partner(name=f"Hostile {secrets.token_hex(3)}",
                            initial_access_token_digest=token_digest(keyring.digest_key, token)))
        session.commit()
    return token


def _hostile_bodies(document: dict, operation: dict) -> dict[str, bytes]:
    """A valid body made hostile: deep in place of a field, and a lone surrogate (as an
    escape and as raw UTF-8 bytes) in each string field in turn."""
    body = _full_example(document, operation)
    fields = [n for n, v in body.items() if isinstance(v, str)] or list(body) or ["x"]
    first = fields[0]
    result = {
        "5000 deep": _replace(body, first, "[" * 5000 + "]" * 5000),
        f"{MAX_JSON_DEPTH * 20} deep": _replace(body, first, '{"a":' * (MAX_JSON_DEPTH * 20)
                                                + "1" + "}" * (MAX_JSON_DEPTH * 20)),
    }
    for name in fields:
        result[f"\\ud800 in {name}"] = _replace(body, name, '"a\\ud800"')
        result[f"\\udc00 in {name}"] = _replace(body, name, '"\\udc00b"')
        result[f"raw surrogate in {name}"] = _replace(body, name, '"x"').replace(
            b'"x"', b'"\xed\xa0\x80"')
    return result


def _replace(body: dict[str, Any], name: str, raw: str) -> bytes:
    members = [f"{json.dumps(k)}: {raw if k == name else json.dumps(v)}"
               for k, v in {**body, name: None}.items()]
    return ("{" + ", ".join(members) + "}").encode()


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_line38_deep_json_and_lone_surrogates_are_4xx_on_every_operation(
    service: str, pair: Pair, engine: Engine, keyring: KeyRing,
) -> None:
    """With every credential that gets an operation past authentication (the checks
    must hold however the body reaches a parser)."""
    app = SERVICES[service](pair.world.settings)
    document = app.openapi()
    callers = {c: pair.headers(c) for c in ("accountant", "partner_app", "connection")}
    callers["registration"] = {"Authorization": f"Bearer {pair.tokens['registration']}"}
    callers["initial"] = {"Authorization": f"Bearer {_initial_token(pair, keyring)}"}
    failures: list[str] = []
    sent = 0
    async with running(app) as client:
        for method, template, operation in operations(document):
            if "application/json" not in operation.get("requestBody", {}).get("content", {}):
                continue
            for what, body in _hostile_bodies(document, operation).items():
                for caller, headers in callers.items():
                    response = await client.request(
                        method, _own_path(pair, template), content=body,
                        headers={**headers, "Content-Type": "application/json"})
                    sent += 1
                    if failure := _assert_problem(response, f"{caller} {what} {method}",
                                                  template):
                        failures.append(failure)
    assert sent > 10
    assert not failures, "\n".join(sorted(set(failures))[:30])


CHUNK = 4096


class CountedBody:
    """A request body of `total` bytes in CHUNK pieces that counts what the server took."""

    def __init__(self, total: int) -> None:
        self.total, self.taken = total, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.total // CHUNK):
            self.taken += CHUNK
            yield b"x" * CHUNK


def _assert_413(response: httpx.Response, operation: dict, what: str) -> str | None:
    if response.status_code != 413:
        return f"{what} -> {response.status_code} {response.text[:120]!r}"
    kind = response.headers.get("content-type", "")
    if operation.get(OAUTH_KEY):
        ok = kind == "application/json" and response.json().get("error") == "invalid_request"
    else:
        ok = kind == "application/problem+json" and response.json()["status"] == 413
    return None if ok else f"{what} -> 413 as {kind} {response.text[:120]!r}"


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_line38_bodies_over_the_route_limit_are_413_and_not_read(
    service: str, pair: Pair, engine: Engine,
) -> None:
    """Each operation in turn, with its documented limit: a Content-Length over it is
    refused with nothing read; a chunked body is cut off once it passes the limit (the
    server took at most one chunk more than the limit)."""
    app = SERVICES[service](pair.world.settings)
    document = app.openapi()
    failures: list[str] = []
    before = fingerprint(engine)
    async with running(app) as client:
        for method, template, operation in operations(document):
            limit = operation[LIMIT_KEY]
            content = operation.get("requestBody", {}).get("content", {})
            media_type = FORM if FORM in content else "application/json"
            path = _own_path(pair, template)
            headers = {**pair.headers("accountant"), "Content-Type": media_type}
            declared = CountedBody(limit + CHUNK * 4)
            response = await client.request(
                method, path, content=declared,
                headers={**headers, "Content-Length": str(limit + 1)})
            failures.append(_assert_413(response, operation, f"Content-Length {method} "
                                                             f"{template}"))
            if declared.taken:
                failures.append(f"{method} {template}: read {declared.taken} bytes of a body "
                                f"whose Content-Length was over the limit")
            streamed = CountedBody(limit * 8 + CHUNK * 8)
            response = await client.request(method, path, content=streamed, headers=headers)
            failures.append(_assert_413(response, operation, f"chunked {method} {template}"))
            if streamed.taken > limit + CHUNK:
                failures.append(f"{method} {template}: read {streamed.taken} bytes of a "
                                f"chunked body (limit {limit})")
    found = [f for f in failures if f]
    assert not found, "\n".join(found[:30]) + f"\n({len(found)} failures)"
    assert changed_tables(before, fingerprint(engine)) == []


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_operation_documents_its_body_limit(service: str, pair: Pair) -> None:
    document = SERVICES[service](pair.world.settings).openapi()
    limits = {(m, p): op.get(LIMIT_KEY) for m, p, op in operations(document)}
    assert all(isinstance(v, int) and 0 < v <= 256 * 1024 for v in limits.values()), limits
