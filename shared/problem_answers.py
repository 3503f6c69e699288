"""The error answers of every operation in the OpenAPI documents, with their bodies, so
that a generated client parses a refusal as a typed problem instead of raising on an
"unexpected status".

Each mechanism that can refuse a request adds its status where it applies: the policy
401, 403 and 404 (shared/policy/openapi.py), `If-Match` 412 (shared/etag.py),
`Idempotency-Key` 409 and 422 (shared/idempotency/openapi.py), the body limits 400 and
413 (shared/body_limits.py), and a dependency marked with `shared.openapi.answers(...)`
(the sync rate limit's 429) through `document_answers` below, which also adds 404 to
every operation with a path parameter and 422 to every one with input (but the OAuth
endpoints, which read their forms themselves). Last, every 4xx answer documented without
a body gets one: the shared `Problem` schema (`application/problem+json`), or `OAuthError`
(`application/json`) on the OAuth endpoints that answer RFC 6749 errors
(`body_limit(..., oauth=True)`). Browser pages (HTML answers) keep their error pages
undocumented as bodies.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from shared.body_limits import OAUTH_KEY
from shared.errors import PROBLEM_CONTENT
from shared.openapi import Document, amend, api_routes, declared_answers, operations

OAUTH_ERROR_SCHEMA: dict[str, Any] = {
    "title": "OAuthError",
    "description": "An OAuth 2.0 error (RFC 6749 section 5.2).",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    "additionalProperties": True,
}
OAUTH_ERROR_REF = "#/components/schemas/OAuthError"
OAUTH_ERROR_CONTENT = {"application/json": {"schema": {"$ref": OAUTH_ERROR_REF}}}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                               "schema": {"type": "integer"}}}
DESCRIPTIONS = {
    "401": "No valid credentials",
    "403": "Forbidden",
    "404": "Not found",
    "409": "Conflict",
    "422": "Invalid input",
    "429": "Too many requests: wait `Retry-After` seconds",
}


def _is_page(operation: dict[str, Any]) -> bool:
    return any("text/html" in answer.get("content", {})
               for status, answer in operation["responses"].items() if status.startswith("2"))


def document_answers(app: FastAPI) -> None:
    """Add the answers described in the module's docstring. Call it after every other
    amendment that adds answers."""
    declared = {(method, path): declared_answers(route) for method, path, route in api_routes(app)}

    def change(document: Document) -> None:
        for method, path, operation in operations(document):
            responses = operation["responses"]
            oauth = bool(operation.get(OAUTH_KEY))  # reads its form itself: no 422
            wanted = {str(status) for status in declared.get((method, path), ())}
            if "{" in path:
                wanted.add("404")
            if (operation.get("parameters") or "requestBody" in operation) and not oauth:
                wanted.add("422")
            for status in sorted(wanted):
                responses.setdefault(status, {"description": DESCRIPTIONS[status]})
            if _is_page(operation):
                continue
            for status, answer in responses.items():
                if status.startswith("4") and "content" not in answer:
                    answer["content"] = OAUTH_ERROR_CONTENT if oauth else PROBLEM_CONTENT
                if status == "429":
                    answer["headers"] = {**RETRY_AFTER, **answer.get("headers", {})}
        if f'"{OAUTH_ERROR_REF}"' in json.dumps(document["paths"]):
            document["components"]["schemas"]["OAuthError"] = OAUTH_ERROR_SCHEMA

    amend(app, change)
