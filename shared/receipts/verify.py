"""Checking a consent receipt offline: its signature under one of the attestation keys,
its header typ, and its claims."""

from __future__ import annotations

from typing import Any

from joserfc import jws
from joserfc.errors import JoseError

from shared.attestation import AttestationError, verify_attestation
from shared.receipts.issue import RECEIPT_TYP


def verify_receipt(token: str, jwks: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The kid and claims of a consent receipt signed by one of `jwks`'s keys (typ
    `consent-receipt+jwt`); AttestationError otherwise, saying why."""
    kids = {key.get("kid") for key in jwks.get("keys", []) if isinstance(key, dict)}
    kid = _header_kid(token)
    if kid is not None and kid not in kids:
        raise AttestationError(f"the receipt's key {kid!r} is not in the key set")
    return verify_attestation(token, jwks, RECEIPT_TYP)


def _header_kid(token: str) -> str | None:
    try:
        kid = jws.extract_compact(token.strip().encode()).headers().get("kid")
    except (JoseError, ValueError, TypeError):
        return None
    return str(kid) if kid is not None else None
