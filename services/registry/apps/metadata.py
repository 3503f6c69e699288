"""Client metadata validation for dynamic registration (RFC 7591 section 2, docs/product.md 5.1).

Errors carry the RFC 7591 error codes: `invalid_redirect_uri` for a bad redirect URI,
`invalid_client_metadata` for anything else.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.oauth import CLIENT_AUTH_METHODS
from shared.scopes import APP_SCOPES, CONSENT_SCOPES, parse_scope
from shared.signing import ID_TOKEN_ALGS

GRANT_TYPES = {"authorization_code", "refresh_token", "client_credentials"}
URI_FIELDS = ("client_uri", "logo_uri", "policy_uri", "tos_uri", "jwks_uri")
# Boolean metadata: RFC 9126 section 6 and RFC 9449 section 5.2 (false when left out).
FLAG_FIELDS = ("require_pushed_authorization_requests", "dpop_bound_access_tokens")
MAX_URIS = 10
MAX_URI_LENGTH = 2000
MAX_JWKS_KEYS = 10


class RegistrationError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _bad(description: str) -> RegistrationError:
    return RegistrationError("invalid_client_metadata", description)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_uri(value: Any, name: str, *, redirect: bool = False) -> str:
    """An absolute https URI (http on loopback only), without a fragment."""
    error = RegistrationError("invalid_redirect_uri", "") if redirect else _bad("")
    if not isinstance(value, str) or not value or len(value) > MAX_URI_LENGTH:
        error.description = f"{name} must be a URI of at most {MAX_URI_LENGTH} characters"
        raise error
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        error.description = f"{name} is not a valid URI"
        raise error from None
    if "#" in value:
        error.description = f"{name} must not carry a fragment"
    elif not host or parts.username is not None or parts.password is not None:
        error.description = f"{name} needs a host and no user information"
    elif parts.scheme == "http" and not _loopback(host):
        error.description = f"{name} must use https (http only on a loopback address)"
    elif parts.scheme not in ("https", "http"):
        error.description = f"{name} must use https"
    if error.description:
        raise error
    return value


def _string(value: Any, name: str, maximum: int, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > maximum:
        raise _bad(f"{name} must be a non-empty string of at most {maximum} characters")
    return value.strip()


def _string_list(value: Any, name: str, default: list[str]) -> list[str]:
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{name} must be an array of strings")
    return list(dict.fromkeys(value))


@dataclass
class ClientMetadata:
    fields: dict[str, Any]

    @property
    def needs_secret(self) -> bool:
        return self.fields["token_endpoint_auth_method"] in ("client_secret_basic",
                                                             "client_secret_post")


def validate(body: Any) -> ClientMetadata:
    """The App fields for a registration or update request's metadata."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    grant_types = _string_list(body.get("grant_types"), "grant_types", ["authorization_code"])
    if not grant_types or not set(grant_types) <= GRANT_TYPES:
        raise _bad(f"grant_types must be among {sorted(GRANT_TYPES)}")
    code_flow = "authorization_code" in grant_types
    response_types = _string_list(body.get("response_types"), "response_types",
                                  ["code"] if code_flow else [])
    if set(response_types) != ({"code"} if code_flow else set()):
        raise _bad("response_types must be [\"code\"] with authorization_code, else empty")
    if "refresh_token" in grant_types and not code_flow:
        raise _bad("refresh_token needs the authorization_code grant")
    redirect_uris = _string_list(body.get("redirect_uris"), "redirect_uris", [])
    if code_flow and not redirect_uris:
        raise RegistrationError("invalid_redirect_uri", "redirect_uris is required")
    if len(redirect_uris) > MAX_URIS:
        raise RegistrationError("invalid_redirect_uri", f"at most {MAX_URIS} redirect_uris")
    for uri in redirect_uris:
        check_uri(uri, "redirect_uri", redirect=True)
    method = body.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in CLIENT_AUTH_METHODS:
        raise _bad(f"token_endpoint_auth_method must be one of {sorted(CLIENT_AUTH_METHODS)}")
    if method == "none" and "client_credentials" in grant_types:
        raise _bad("a public client (auth method none) cannot use client_credentials")
    scope = body.get("scope", "")
    if not isinstance(scope, str) or len(scope) > 2000:
        raise _bad("scope must be a space-separated string")
    scopes = parse_scope(scope)
    unknown = [s for s in scopes if s not in CONSENT_SCOPES | APP_SCOPES]
    if unknown:
        raise _bad(f"unknown or reserved scopes: {' '.join(unknown)}")
    fields: dict[str, Any] = {
        "name": _string(body.get("client_name"), "client_name", 200, required=True),
        "redirect_uris": redirect_uris, "grant_types": grant_types,
        "response_types": response_types, "token_endpoint_auth_method": method,
        "scopes": scopes,
    }
    contacts = _string_list(body.get("contacts"), "contacts", [])
    if len(contacts) > MAX_URIS or any(len(c) > 320 for c in contacts):
        raise _bad(f"at most {MAX_URIS} contacts of at most 320 characters")
    fields["contacts"] = contacts
    for name in URI_FIELDS:
        fields[name] = None if body.get(name) is None else check_uri(body[name], name)
    fields["jwks"] = _jwks(body.get("jwks"))
    if method == "private_key_jwt" and (fields["jwks"] is None) == (fields["jwks_uri"] is None):
        raise _bad("private_key_jwt needs exactly one of jwks and jwks_uri")
    if method != "private_key_jwt" and (fields["jwks"] or fields["jwks_uri"]):
        raise _bad("jwks and jwks_uri are for private_key_jwt only")
    alg = body.get("id_token_signed_response_alg")
    if alg is not None and alg not in ID_TOKEN_ALGS:
        raise _bad(f"id_token_signed_response_alg must be one of {', '.join(ID_TOKEN_ALGS)}")
    fields["id_token_signed_response_alg"] = alg
    logout_uris = _string_list(body.get("post_logout_redirect_uris"),
                               "post_logout_redirect_uris", [])
    if len(logout_uris) > MAX_URIS:
        raise _bad(f"at most {MAX_URIS} post_logout_redirect_uris")
    for uri in logout_uris:
        check_uri(uri, "post_logout_redirect_uri", redirect=True)
    fields["post_logout_redirect_uris"] = logout_uris
    for flag in FLAG_FIELDS:
        value = body.get(flag, False)
        if not isinstance(value, bool):
            raise _bad(f"{flag} must be true or false")
        fields[flag] = value
    return ClientMetadata(fields)


def _jwks(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    keys = value.get("keys") if isinstance(value, dict) else None
    if not isinstance(keys, list) or not keys or len(keys) > MAX_JWKS_KEYS or not all(
        isinstance(k, dict) and isinstance(k.get("kty"), str) and "d" not in k for k in keys
    ):
        raise _bad("jwks must hold 1 to 10 public keys")
    return {"keys": keys}


def document(app: Any) -> dict[str, Any]:
    """The client's registered metadata as RFC 7591 names it."""
    out = {
        "client_id": app.client_id,
        "client_id_issued_at": int(app.created_at.timestamp()),
        "client_name": app.name,
        "redirect_uris": app.redirect_uris,
        "grant_types": app.grant_types,
        "response_types": app.response_types,
        "token_endpoint_auth_method": app.token_endpoint_auth_method,
        "scope": " ".join(app.scopes),
        "contacts": app.contacts,
        "post_logout_redirect_uris": app.post_logout_redirect_uris,
        **{flag: getattr(app, flag) for flag in FLAG_FIELDS},
    }
    for name in (*URI_FIELDS, "id_token_signed_response_alg"):
        if getattr(app, name) is not None:
            out[name] = getattr(app, name)
    if app.jwks is not None:
        out["jwks"] = app.jwks
    if app.client_secret_digest is not None:
        out["client_secret_expires_at"] = 0
    return out
