"""The `Idempotency-Key` header in the OpenAPI documents of registry and sync."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from shared.idempotency.keys import HEADER, MAX_KEY_LENGTH, METHODS, REPLAYED_HEADER

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


def document_idempotency_key(app: FastAPI) -> None:
    """Add the header parameter to every POST and PATCH operation of `app`'s document."""
    generate = app.openapi
    methods = {m.lower() for m in METHODS}

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        document = generate()
        if first:
            for path_item in document.get("paths", {}).values():
                for method, operation in path_item.items():
                    parameters = operation.setdefault("parameters", []) \
                        if method in methods else None
                    if parameters is not None and all(p.get("name") != HEADER
                                                      for p in parameters):
                        parameters.append(PARAMETER)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
