"""What the declared policy says in the OpenAPI documents: each operation's `operationId`,
its `security` (the OAuth 2.0 scopes of its rule) and the refusals it can answer.

- `operationId`: the policy operation in camelCase segments (`employees.read`,
  `webhooks.rotateSecret`); a route that names no operation (the auth service's) gets
  `<tag>.<function name>` (`oauth2.token`); an explicit `operation_id=` on the route wins
  (two routes naming one operation, like the health probes, need one).
- `security`: per `Rule.credential`: an access token is the `oauth2` scheme with one
  alternative requirement per scope of `Rule.scopes` (any one of them suffices); no
  credential is `[]`; the registration tokens are their bearer schemes (and a rule's
  `also`, the partner's initial access token, is one more alternative).
- The `oauth2` scheme: both flows at the auth service, with every scope of the catalogue
  (shared/scopes.py) that the flow can grant, described.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from shared.config import Settings
from shared.openapi import Document, amend, api_routes, operations
from shared.policy.dependency import route_operation
from shared.policy.rules import RULES, Credential, Rule
from shared.scopes import CLIENT_CREDENTIALS_SCOPES, SCOPES, ScopeKind

OAUTH2 = "oauth2"
# Dot-separated camelCase words: `employees.read`, `environment.connections.bulkRevoke`.
OPERATION_ID = re.compile(r"^[a-z][A-Za-z0-9]*(\.[a-z][A-Za-z0-9]*)+$")
CREDENTIAL_SCHEMES = {
    Credential.INITIAL_ACCESS_TOKEN: "InitialAccessToken",
    Credential.REGISTRATION_ACCESS_TOKEN: "RegistrationAccessToken",
}
REFUSALS: dict[str, dict[str, Any]] = {
    "401": {"description": "No valid access token (missing, expired, revoked or forged)"},
    "403": {"description": "The policy refuses this caller, or its token lacks the scope"},
    "404": {"description": "No such object within the caller's reach"},
}


def camel(words: str) -> str:
    """`rotate_secret` -> `rotateSecret`, `event catalogue` -> `eventCatalogue`."""
    first, *rest = [w for w in re.split(r"[\s_\-]+", words) if w]
    return first[:1].lower() + first[1:] + "".join(w[:1].upper() + w[1:] for w in rest)


def operation_id(route: APIRoute, operation: str | None) -> str:
    """The route's `operationId` (see the module's docstring)."""
    if route.operation_id:
        return route.operation_id
    if operation is not None:
        return ".".join(camel(segment) for segment in operation.split("."))
    if not route.tags:
        raise RuntimeError(f"{route.path} has neither a tag nor an operation_id")
    return f"{camel(str(route.tags[0]))}.{camel(route.name)}"


def security(rule: Rule) -> list[dict[str, list[str]]]:
    """The OpenAPI `security` of an operation with `rule`."""
    if rule.credential is Credential.NONE:
        return []
    if rule.credential is Credential.ACCESS_TOKEN:
        requirements = [{OAUTH2: [scope]} for scope in rule.scopes] or [{OAUTH2: []}]
        if rule.also is not None:  # e.g. a partner's own operation: its initial token
            requirements.append({CREDENTIAL_SCHEMES[rule.also]: []})
        return requirements
    return [{CREDENTIAL_SCHEMES[rule.credential]: []}]


def oauth2_scheme(settings: Settings) -> dict[str, Any]:
    """The OAuth 2.0 security scheme: the auth service's endpoints and the scopes."""
    token = f"{settings.issuer}/token"

    def described(names: Any) -> dict[str, str]:
        return {name: SCOPES[name].description["en"] for name in sorted(names)}

    return {
        "type": "oauth2",
        "description": "Access tokens (RFC 9068 JWTs) from the Koppel auth service, sent as "
                       "`Authorization: Bearer`. The authorization code flow requires PKCE "
                       "(S256). Each operation lists the scopes that each suffice.",
        "flows": {
            "authorizationCode": {
                "authorizationUrl": f"{settings.issuer}/authorize", "tokenUrl": token,
                "refreshUrl": token,
                "scopes": described(s.name for s in SCOPES.values()
                                    if s.kind is not ScopeKind.APP)},
            "clientCredentials": {"tokenUrl": token,
                                  "scopes": described(CLIENT_CREDENTIALS_SCOPES)},
        },
    }


def _referenced(document: Document) -> set[str]:
    return {name for _, _, operation in operations(document)
            for requirement in operation.get("security", []) for name in requirement}


def declare_policy(app: FastAPI, settings: Settings) -> None:
    """Each operation's id, security and policy refusals, and the `oauth2` scheme. Call it
    once every route is in: two operations with one id refuse to build the app."""
    ids, rules = {}, {}
    for method, path, route in api_routes(app):
        operation = route_operation(route)
        ids[(method, path)] = operation_id(route, operation)
        if operation is not None:
            rules[(method, path)] = RULES[operation]
    twice = sorted(name for name, count in Counter(ids.values()).items() if count > 1)
    if twice:
        raise RuntimeError(f"operation ids used twice (give one an operation_id): {twice}")

    def change(document: Document) -> None:
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[OAUTH2] = oauth2_scheme(settings)
        for method, path, operation in operations(document):
            operation["operationId"] = ids[(method, path)]
            rule = rules.get((method, path))
            if rule is not None:
                operation["security"] = security(rule)
            operation.setdefault("security", [])
            if rule is None or rule.credential not in (Credential.ACCESS_TOKEN,
                                                       Credential.NONE):
                continue
            refusals = ["401", "403"] if rule.credential is Credential.ACCESS_TOKEN else []
            for status in refusals + (["404"] if "{" in path else []):
                operation["responses"].setdefault(status, dict(REFUSALS[status]))
        used = _referenced(document)
        for name in [n for n in schemes if n not in used and n != OAUTH2]:
            del schemes[name]  # FastAPI's own bearer scheme, replaced by `oauth2`

    amend(app, change)
