"""The `Idempotency-Key` header in the OpenAPI documents of registry and sync."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from shared.idempotency.keys import HEADER, MAX_KEY_LENGTH, METHODS, REPLAYED_HEADER
from shared.openapi import Document, amend, operations

PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Makes the call safe to retry (Stripe's semantics). The same key with the same "
        "method, path and body within 24 hours answers the stored answer, marked "
        f"`{REPLAYED_HEADER}: true`, without doing the work again; with another request "
        "it answers 422, and while the first is still running 409. Keys are the "
        "caller's own. Only successful (2xx) answers are kept."),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
               "pattern": "^[\\x20-\\x7e]+$"},
}


ANSWERS: dict[str, dict[str, Any]] = {
    "409": {"description": f"A request with this `{HEADER}` is still running"},
    "422": {"description": f"This `{HEADER}` was used with another request (or the input "
                           "is invalid)"},
}


def document_idempotency_key(app: FastAPI) -> None:
    """Add the header parameter, and its 409 and 422 answers, to every POST and PATCH
    operation of `app`'s document."""
    methods = {m.lower() for m in METHODS}

    def change(document: Document) -> None:
        for method, _, operation in operations(document):
            if method not in methods:
                continue
            parameters = operation.setdefault("parameters", [])
            if all(p.get("name") != HEADER for p in parameters):
                parameters.append(PARAMETER)
            for status, answer in ANSWERS.items():
                operation["responses"].setdefault(status, dict(answer))

    amend(app, change)
