"""Declares in the OpenAPI document how the auth service's callers authenticate.

The token, PAR, revocation and introspection endpoints read client credentials themselves
(RFC 6749 section 2.3: HTTP Basic, or in the form for client_secret_post,
private_key_jwt and public clients), and the challenge API reads a first-party client's
HTTP Basic credentials in a dependency; userinfo reads its bearer token itself. None goes
through a FastAPI security class, so the document would not say so on its own. Fuzzers
and client generators read it here, with the OAuth errors those endpoints answer.
"""

from __future__ import annotations

from fastapi import FastAPI

from shared.openapi import Document, amend, operations
from shared.policy.openapi import OAUTH2
from shared.problem_answers import OAUTH_ERROR_CONTENT

CLIENT_AUTHENTICATED = frozenset({"/token", "/par", "/revoke", "/introspect"})
FIRST_PARTY_PREFIXES = ("/oauth2/login-requests/", "/oauth2/consent-requests/")
USERINFO = "/userinfo"
# What the client-authenticated endpoints answer besides 413, as OAuth errors.
CLIENT_ERRORS = {
    "400": {"description": "invalid_request, invalid_grant, unsupported_grant_type, ..."},
    "401": {"description": "invalid_client: the client could not be authenticated"},
    "429": {"description": "invalid_client: too many failed client authentications"},
}

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
    if path == USERINFO:
        return [{OAUTH2: ["openid"]}]
    return None  # public (shared/policy/openapi.py writes `[]`)


def declare_security(app: FastAPI) -> None:
    """Add the schemes, each operation's entry and the OAuth errors it answers."""

    def change(document: Document) -> None:
        document.setdefault("components", {}).setdefault("securitySchemes", {}).update(SCHEMES)
        for _, path, operation in operations(document):
            security = _security(path)
            if security is not None:
                operation["security"] = security
            responses = operation["responses"]
            if path in CLIENT_AUTHENTICATED:  # bodies: shared/problem_answers.py
                responses.update({status: dict(answer) for status, answer
                                  in CLIENT_ERRORS.items() if status not in responses})
            if path == USERINFO:
                responses["401"] = {"description": "No valid access token with `openid`",
                                    "content": OAUTH_ERROR_CONTENT}

    amend(app, change)
