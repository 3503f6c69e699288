"""The one reading of a client's credentials in a request: the HTTP Basic header (RFC
6749 section 2.3.1), and the client id a request claims. Client authentication (Authlib's
`client_secret_basic`, the challenge API) and the limit on failed client
authentications use these same functions, so a client id is counted under the very
spelling that authenticates (`kp%5Fx` in Basic is `kp_x`)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from urllib.parse import unquote_plus

# Longer client ids do not exist; longer claims are cut in the limiter's key.
MAX_CLIENT_ID = 100
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Every `failure_key` starts with it (the client cache tracks the counters under it).
FAILURE_PREFIX = "client-auth:"


def uses_basic(header: str) -> bool:
    """Whether an `Authorization` header is of the HTTP Basic scheme (well formed or not)."""
    return header.strip().partition(" ")[0].lower() == "basic"


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(client id, secret) from an HTTP Basic `Authorization` header: base64, then UTF-8,
    then each half form-urlencoded (RFC 6749 section 2.3.1). None if it is not Basic
    or not well formed (bad base64, not UTF-8, no colon, an empty id); never raises."""
    if not uses_basic(header):
        return None
    value = header.strip().partition(" ")[2]
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        raw_id, separator, raw_secret = decoded.partition(":")
        client_id = unquote_plus(raw_id, errors="strict")
        secret = unquote_plus(raw_secret, errors="strict")
    except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
        return None
    if not separator or not client_id:
        return None
    return client_id, secret


def _assertion_subject(assertion: str) -> str | None:
    """The unverified `sub` of a client assertion: the client id it authenticates as."""
    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error, RecursionError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) else None


def claimed_client_id(headers: Mapping[str, str], form: Mapping[str, str]) -> str:
    """The client id a token, revocation or introspection request authenticates as, read
    as authentication reads it: HTTP Basic, else a client assertion's subject, else the
    form's `client_id`; "-" if none."""
    credentials = basic_credentials(headers.get("authorization", ""))
    claimed: str | None
    if credentials is not None:
        claimed = credentials[0]
    elif form.get("client_assertion_type") == ASSERTION_TYPE and form.get("client_assertion"):
        claimed = _assertion_subject(form["client_assertion"])
    else:
        claimed = form.get("client_id")
    return (claimed or "-")[:MAX_CLIENT_ID]


def failure_key(client_id: str, address: str) -> str:
    """The rate-limit key of failed authentications of `client_id` from `address`.

    Per client and address: one address's failures never lock the client out for its
    others (its own servers), and a client secret (256 random bits) cannot be guessed
    with the attempts any number of addresses gets."""
    return f"{FAILURE_PREFIX}{client_id[:MAX_CLIENT_ID]}:{address}"
