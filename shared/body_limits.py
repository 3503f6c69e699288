"""Request bodies every service refuses before its endpoints see them (SECURITY 33, 38).

One pure ASGI middleware, installed by `create_service_app`, answers:

- 413 when a body is larger than its route allows: at once when `Content-Length` says
  so (nothing is read), and as soon as a streamed (chunked) body grows past the limit
  (the endpoint is stopped and its answer replaced; nothing after the limit is read);
- 400 when a JSON body is nested deeper than `MAX_JSON_DEPTH`, is not UTF-8, or holds a
  lone surrogate (`"\\ud800"`): Python's parser accepts those, and they end as a
  RecursionError or an encoding error deep inside a handler or a database driver.

A route declares its limit where it is declared: `openapi_extra=body_limit(16 * KiB)`
(`oauth=True` on OAuth endpoints, which answer `{"error": "invalid_request"}` instead of
a problem document). Every other route gets its service's default. Every operation of
the OpenAPI document carries its limit as `x-koppel-body-limit`, and each operation with a
body its 413 (and 400 for a JSON body) answer.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from fastapi import FastAPI
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import PROBLEM_JSON, problem_type
from shared.openapi import Document, amend, api_routes, operations

KiB = 1024
LIMIT_KEY = "x-koppel-body-limit"
OAUTH_KEY = "x-koppel-oauth-errors"
MAX_JSON_DEPTH = 32
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A JSON text can hold a surrogate only as a \uD800-\uDFFF escape once it is valid UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def body_limit(max_bytes: int, *, oauth: bool = False) -> dict[str, Any]:
    """`openapi_extra` for a route whose bodies may be up to `max_bytes` long."""
    return {LIMIT_KEY: max_bytes, **({OAUTH_KEY: True} if oauth else {})}


def declare_body_limits(app: FastAPI, default: int) -> None:
    """State every operation's limit in the OpenAPI document (`x-koppel-body-limit`):
    a route's own (from its `openapi_extra`), else the service's default."""

    def change(document: Document) -> None:
        for _, _, operation in operations(document):
            limit = operation.setdefault(LIMIT_KEY, default)
            if "requestBody" not in operation:
                continue
            responses = operation["responses"]
            responses.setdefault("413", {"description": f"The body is over {limit} bytes"})
            if any(kind == "application/json" or kind.endswith("+json")
                   for kind in operation["requestBody"].get("content", {})):
                responses.setdefault("400", {"description": (
                    f"The JSON body is nested deeper than {MAX_JSON_DEPTH}, is not UTF-8 "
                    "or holds a lone surrogate")})

    amend(app, change)


def _declared_limits(app: FastAPI, default: int) -> list[tuple[set[str], re.Pattern, int, bool]]:
    """(methods, path pattern, limit, OAuth errors) of every route that declares a limit
    other than the default or OAuth errors."""
    found = []
    for method, path, route in api_routes(app):
        extra = route.openapi_extra or {}
        limit, oauth = extra.get(LIMIT_KEY, default), bool(extra.get(OAUTH_KEY))
        if limit != default or oauth:
            found.append(({method.upper()}, compile_path(path)[0], limit, oauth))
    return found


class BodyTooLarge(Exception):
    """Raised into the endpoint that reads past its route's limit (never a ValueError,
    so no parser's error handling swallows it)."""


class _Refusal(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class UnsafeJson(_Refusal, ValueError):
    """A JSON body no endpoint should be handed (see `check_json`)."""

    def __init__(self, detail: str) -> None:
        super().__init__(400, detail)


def _answer(status: int, detail: str, oauth: bool) -> tuple[Message, Message]:
    content: dict[str, Any]
    if oauth:
        content = {"error": "invalid_request", "error_description": detail}
        kind = b"application/json"
    else:
        slug, title = (("payload-too-large", "Payload too large") if status == 413
                       else ("bad-request", "Bad request"))
        content = {"type": problem_type(slug), "title": title, "status": status,
                   "detail": detail}
        kind = PROBLEM_JSON.encode()
    body = json.dumps(content).encode()
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]
    if status == 413:
        # The rest of the body stays unread: the server closes the connection instead of
        # draining it for the next request (RFC 9110 section 15.5.14).
        headers.append((b"connection", b"close"))
    start = {"type": "http.response.start", "status": status, "headers": headers}
    return start, {"type": "http.response.body", "body": body}


def check_json(raw: bytes) -> None:
    """Raise `UnsafeJson` if `raw` is JSON that no endpoint should be handed: not UTF-8,
    nested deeper than MAX_JSON_DEPTH, or holding a lone surrogate. Text that is not JSON
    at all is left to the endpoint, which answers it in its own way. An endpoint that
    parses a body itself, whatever its media type, calls this first."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeJson("the JSON body is not valid UTF-8") from None
    opening = text.count("[") + text.count("{")
    escapes = _SURROGATE_ESCAPE.search(text) is not None
    if opening <= MAX_JSON_DEPTH and not escapes:
        return  # cannot be too deep, cannot hold a surrogate: the common case
    try:
        document = json.loads(text)
    except RecursionError:
        raise UnsafeJson(f"the JSON body is nested deeper than {MAX_JSON_DEPTH}") from None
    except ValueError:
        return
    _walk(document)


def _walk(document: Any) -> None:
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise UnsafeJson(f"the JSON body is nested deeper than {MAX_JSON_DEPTH}")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeJson("the JSON body holds a lone surrogate (\\ud800-\\udfff)") from None


def _is_json(scope: Scope) -> bool:
    """Whether the endpoint will read the body as JSON: a JSON media type, or none (what
    FastAPI then assumes)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True


class BodyLimits:
    """The middleware (see the module's docstring). `service` is the FastAPI app whose
    routes declare their limits, read at its first request (routes are added after the
    middleware)."""

    def __init__(self, app: ASGIApp, service: FastAPI, default: int) -> None:
        self.app, self.service, self.default = app, service, default
        self._declared: list[tuple[set[str], re.Pattern, int, bool]] | None = None

    def _limit(self, scope: Scope) -> tuple[int, bool]:
        if self._declared is None:
            self._declared = _declared_limits(self.service, self.default)
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        for methods, pattern, limit, oauth in self._declared:
            if scope["method"] in methods and pattern.match(path):
                return limit, oauth
        return self.default, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        declared = next((v for n, v in headers if n == b"content-length"), None)
        streamed = any(n == b"transfer-encoding" for n, _ in headers)
        if declared is None and not streamed and scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)  # no body (HTTP/1.1)
            return
        limit, oauth = self._limit(scope)
        try:
            if declared is not None and not declared.isdigit():
                raise _Refusal(400, "the Content-Length header is not a number")
            if declared is not None and int(declared) > limit:
                raise _Refusal(413, f"the request body exceeds {limit} bytes")
            if _is_json(scope):
                body = await _read(receive, limit)
                check_json(body)
                receive = _replay(body, receive)
        except _Refusal as refusal:
            for message in _answer(refusal.status, refusal.detail, oauth):
                await send(message)
            return
        await self._stream(scope, receive, send, limit, oauth)

    async def _stream(self, scope: Scope, receive: Receive, send: Send, limit: int,
                      oauth: bool) -> None:
        seen, too_large, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            if too_large:
                raise BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_large = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # the endpoint's answer to a cut-off body is replaced below
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(BodyTooLarge):  # the endpoint stopped reading: answered below
            await self.app(scope, limited_receive, guarded_send)
        if too_large and not started:
            for message in _answer(413, f"the request body exceeds {limit} bytes", oauth):
                await send(message)


async def _read(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise _Refusal(400, "the client went away before its body ended")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Refusal(413, f"the request body exceeds {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
