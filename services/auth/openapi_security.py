"""Declares in the OpenAPI document how the auth service's callers authenticate.

The token, PAR, revocation and introspection endpoints read client credentials themselves
(RFC 6749 section 2.3: HTTP Basic, or in the form for client_secret_post,
private_key_jwt and public clients), and the challenge API reads a first-party client's
HTTP Basic credentials in a dependency; neither goes through a FastAPI security class,
so the document would not say so on its own. Fuzzers and client generators read it here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

CLIENT_AUTHENTICATED = frozenset({"/token", "/par", "/revoke", "/introspect"})
FIRST_PARTY_PREFIXES = ("/oauth2/login-requests/", "/oauth2/consent-requests/")

SCHEMES = {
    "clientBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "client_secret_basic: the client id and secret. Clients using "
                       "client_secret_post, private_key_jwt or none send their "
                       "credentials in the form instead.",
    },
    "firstPartyBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "The SaaS frontend's first-party client id and secret.",
    },
}


def _security(path: str) -> list[dict[str, list[str]]] | None:
    if path in CLIENT_AUTHENTICATED:
        return [{"clientBasic": []}, {}]  # {}: the credentials may be in the form instead
    if path.startswith(FIRST_PARTY_PREFIXES):
        return [{"firstPartyBasic": []}]
    return None


def declare_security(app: FastAPI) -> None:
    """Wrap the app's OpenAPI generator to add the schemes and each operation's entry."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = generate()
        document.setdefault("components", {}).setdefault("securitySchemes", {}).update(SCHEMES)
        for path, item in document.get("paths", {}).items():
            security = _security(path)
            if security is None:
                continue
            for operation in item.values():
                if isinstance(operation, dict):
                    operation["security"] = security
        return document

    app.openapi = openapi  # type: ignore[method-assign]
